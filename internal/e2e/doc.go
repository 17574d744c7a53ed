// Package e2e holds the end-to-end tests of Tether as a user runs it: the
// real `tether hub` and `tether agent` binaries as separate processes, a
// real kube-apiserver, real Git repositories (and a real Gitea), webhooks
// signed as Git hosts sign them, and the hub's page and badges rendered by
// headless Chromium. It has no code outside its tests: nothing may import
// it, and it never calls the reconciler or the hub in-process.
//
// The tests need the control-plane binaries ($TETHER_TEST_BIN), a Gitea
// build ($TETHER_TEST_GITEA), Chromium, iproute2 and iptables, and root for
// the network namespace; `make test` provides all of them.
package e2e
