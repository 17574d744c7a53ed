package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestResilience takes one hub and one agent through what happens to them
// in production: the hub restarts, the hub is down while the agent keeps
// applying commits, the agent restarts, the agent's token is revoked while
// its stream is open and replaced, and a person asks for a resync through
// the hub. The GitSync polls every 2 s here, so commits land without the
// hub.
func TestResilience(t *testing.T) {
	dir := t.TempDir()
	repo, err := newGitServer(t).CreateRepo("acme/app")
	if err != nil {
		t.Fatal(err)
	}
	shas := []string{commit(t, repo, "one")}
	h := startHub(t, dir, hubOptions{})
	tokenFile := h.token(t, "r1.token", "--agent", "r1")
	ag := startAgent(t, dir, h.url, "r1", tokenFile, "--source-ttl", "500ms")
	ns := newNamespace(t, "resilience")
	createGitSync(t, ns, "app", repo.URL, "main", 2*time.Second)
	badge := h.badgeURL("r1", ns, "app")
	waitApplied(t, ns, "one")
	waitBadge(t, badge, "synced "+short(shas[0]))

	t.Log("step: hub restart; its SQLite state survives and the agent reconnects")
	h.restart(t)
	if gs := hubGitSyncs(t, h, "r1"); len(gs) != 1 || gs[0].Commit != shas[0] {
		t.Fatalf("after a restart the hub holds %+v, want one GitSync at %s", gs, short(shas[0]))
	}
	h.waitConnected(t, "r1", true)
	waitBadge(t, badge, "synced "+short(shas[0]))

	t.Log("step: hub down while the agent applies two commits")
	if err := h.stop(); err != nil {
		t.Fatalf("hub stopped with %v", err)
	}
	for _, v := range []string{"two", "three"} {
		shas = append(shas, commit(t, repo, v))
		waitApplied(t, ns, v)
	}
	// The agent noticed and keeps retrying; it buffers the newest report.
	ag.waitLog(t, "cannot reach the hub; retrying", ag.count("cannot reach the hub; retrying")+1, 2*time.Minute)
	reconnects := ag.count("connected to the hub")
	h.start(t, h.addr)
	seen := watchRevisions(t, h, "r1", shas[2])
	t.Logf("after the outage the hub showed, in order: %v", shortAll(seen))
	if i := slices.Index(seen, shas[2]); i < 0 {
		t.Fatalf("the hub never showed %s: %v", short(shas[2]), shortAll(seen))
	}
	// The revisions the hub showed, in order, never go back to an older
	// commit once a newer one was shown.
	last := -1
	for _, s := range seen {
		i := slices.Index(shas, s)
		if i < last {
			t.Fatalf("the hub showed %s after %s: %v", short(s), short(shas[last]), shortAll(seen))
		}
		last = i
	}
	waitBadge(t, badge, "synced "+short(shas[2]))
	// One GitSync, so one report waited in the agent's buffer: the newest.
	ag.waitLog(t, "connected to the hub", reconnects+1, time.Minute)
	if l := lastLine(ag.log(), "connected to the hub"); !strings.Contains(l, "pending=1") {
		t.Errorf("on reconnecting the agent had other than one report pending: %s", l)
	}
	if gs := hubGitSyncs(t, h, "r1"); len(gs) != 1 || gs[0].Commit != shas[2] {
		t.Fatalf("after the outage the hub holds %+v, want one GitSync at %s", gs, short(shas[2]))
	}
	for i, want := range []string{"superseded", "superseded", "live"} {
		c, err := h.commit(shas[i])
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 && len(c.Environments) == 0 {
			continue // the hub was away the whole time this commit was live
		}
		if len(c.Environments) != 1 || c.Environments[0].State != want {
			t.Errorf("commit %s (%d of 3): hub says %+v, want one environment %s", short(shas[i]), i+1, c.Environments, want)
		}
	}

	t.Log("step: agent restart")
	if err := ag.stop(); err != nil {
		t.Fatalf("agent stopped with %v", err)
	}
	h.waitConnected(t, "r1", false)
	waitBadge(t, badge, "offline")
	ag.start(t)
	h.waitConnected(t, "r1", true)
	shas = append(shas, commit(t, repo, "four"))
	waitApplied(t, ns, "four")
	waitBadge(t, badge, "synced "+short(shas[3]))

	t.Log("step: token revoked while the stream is open")
	out := mustRun(t, suite.tether, "hub", "token", "revoke", "--db", h.db, "--agent", "r1")
	if !strings.Contains(out, "revoked 1 agent token(s) of r1") {
		t.Errorf("token revoke said %q", out)
	}
	refused := "hub refused the agent's token"
	before := ag.count(refused)
	// The hub checks an open stream's token again every heartbeat (20 s);
	// two refusals show the agent keeps trying, with backoff, and runs on.
	ag.waitLog(t, refused, before+2, 2*time.Minute)
	h.waitConnected(t, "r1", false)
	for _, l := range strings.Split(ag.log(), "\n") {
		if strings.Contains(l, refused) && (!strings.Contains(l, "retryIn=") || !strings.Contains(l, "Unauthenticated")) {
			t.Errorf("refusal line without the code or the backoff: %s", l)
		}
	}
	if strings.Contains(ag.log(), strings.TrimSpace(readFile(t, tokenFile))) {
		t.Errorf("the agent logged its token")
	}
	h.token(t, "r1.token", "--agent", "r1") // a new token in the same file
	h.waitConnected(t, "r1", true)
	waitBadge(t, badge, "synced "+short(shas[3]))

	t.Log("step: tether resync through the hub's API")
	if got := getGitSync(t, ns, "app").Status.LastHandledResyncAt; got != "" {
		t.Fatalf("lastHandledResyncAt is %q before any resync", got)
	}
	if out, err := run(suite.tether, "resync", ns+"/app", "--hub-url", h.url, "--agent", "r1", "--token-file", tokenFile); err == nil || !strings.Contains(out, "401") {
		t.Errorf("resync with an agent token instead of an API token: %v %q, want a 401", err, out)
	}
	apiToken := h.token(t, "ci.token", "--api", "--name", "ci")
	out = mustRun(t, suite.tether, "resync", ns+"/app", "--hub-url", h.url, "--agent", "r1", "--token-file", apiToken)
	if !strings.Contains(out, "the hub asked agent r1 to resync "+ns+"/app") {
		t.Errorf("tether resync said %q", out)
	}
	eventually(t, 2*time.Minute, "status.lastHandledResyncAt", func() (bool, string) {
		gs := getGitSync(t, ns, "app")
		at, want := gs.Status.LastHandledResyncAt, gs.Annotations["tether.dev/resync-at"]
		return at != "" && at == want, fmt.Sprintf("lastHandledResyncAt=%q annotation=%q", at, want)
	})
	ag.waitLog(t, "resync asked by the hub", 1, time.Minute)
}

// hubGitSyncs lists agent's GitSyncs through the hub's API.
func hubGitSyncs(t *testing.T, h *hubProc, agent string) []hubGitSync {
	t.Helper()
	gs, err := h.gitsyncs(agent)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

// watchRevisions polls the hub's API until the agent's only GitSync shows
// want, and returns every commit it showed on the way, in order.
func watchRevisions(t *testing.T, h *hubProc, agent, want string) []string {
	t.Helper()
	var seen []string
	eventually(t, 2*time.Minute, "the hub to show "+short(want), func() (bool, string) {
		gs, err := h.gitsyncs(agent)
		if err != nil || len(gs) == 0 {
			return false, fmt.Sprint(gs, err)
		}
		if len(gs) != 1 {
			t.Fatalf("the hub lists %d GitSyncs for %s, want 1: %+v", len(gs), agent, gs)
		}
		if c := gs[0].Commit; len(seen) == 0 || seen[len(seen)-1] != c {
			seen = append(seen, c)
		}
		return gs[0].Commit == want, fmt.Sprint(shortAll(seen))
	})
	return seen
}

func shortAll(shas []string) []string {
	out := make([]string, len(shas))
	for i, s := range shas {
		if len(s) >= 7 {
			out[i] = short(s)
		}
	}
	return out
}

// lastLine is the last line of log that contains s.
func lastLine(log, s string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}
