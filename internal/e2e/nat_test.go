package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestHubNeverDialsAgent runs the hub in a network namespace that cannot
// open a single connection (NEW outgoing packets are dropped), the agent
// on the host. Everything still works: the agent dials in, reports, and
// the webhook's "sync now" travels down the stream the agent opened. So
// the hub needs no route to the cluster, as with a cluster behind NAT.
func TestHubNeverDialsAgent(t *testing.T) {
	n := newNetns(t)
	probe, accepted := n.hostListener(t)
	if !n.canDial(probe) {
		t.Fatalf("before the firewall rule the namespace cannot reach %s on the host: the veth set-up is broken", probe)
	}
	n.dropNewOutgoing(t)
	if n.canDial(probe) {
		t.Fatalf("after the firewall rule the namespace still reaches %s on the host", probe)
	}
	if got := accepted.Load(); got != 1 {
		t.Fatalf("host listener accepted %d connections from the namespace, want 1 (the one before the rule)", got)
	}

	dir := t.TempDir()
	repo, err := newGitServer(t).CreateRepo("acme/app")
	if err != nil {
		t.Fatal(err)
	}
	sha1 := commit(t, repo, "one")
	h := startHub(t, dir, hubOptions{listen: n.nsIP + ":0", wrap: n.exec()})
	if !strings.HasPrefix(h.addr, n.nsIP+":") {
		t.Fatalf("hub serves on %s, want %s", h.addr, n.nsIP)
	}
	ag := startAgent(t, dir, h.url, "nat", h.token(t, "nat.token", "--agent", "nat"))
	ns := newNamespace(t, "nat")
	createGitSync(t, ns, "app", repo.URL, "main", time.Hour)
	waitApplied(t, ns, "one")
	h.waitConnected(t, "nat", true)
	waitBadge(t, h.badgeURL("nat", ns, "app"), "synced "+short(sha1))

	env := environment{hub: h, agent: ag, name: "nat", ns: ns, gitsync: "app", repoURL: repo.URL}
	env.webhookDeploy(t, func() string { return commit(t, repo, "two") }, sha1, "two")

	// Still cut off at the end: nothing above went through a hole.
	if n.canDial(probe) {
		t.Fatalf("the namespace reaches %s on the host at the end of the test", probe)
	}
}
