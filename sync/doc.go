// Package sync is Tether's orchestrator. One reconcile per GitSync resolves
// the source revision and decides whether anything must happen; when it must,
// a sync runs source → render → plan → apply → prune and writes the status.
// It owns scheduling (interval with jitter, backoff after failures, the
// resync annotation), the "latest wins" hand-over that cancels work on an
// older revision when a newer one arrives, Kubernetes events, and the
// GitSync status: it is the only package that writes status.
//
// It talks to source, render and apply through the small interfaces declared
// in interfaces.go, never to the cluster objects it deploys directly.
package sync
