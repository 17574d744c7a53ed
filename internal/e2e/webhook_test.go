package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCommitWebhookBadgeStatus is the product's promise end to end: a
// commit, GitHub's push webhook to the hub, "sync now" down the agent's
// stream, the agent applies the commit, reports it, and the hub shows it
// in both badges and posts a commit status. The GitSync polls only once an
// hour, so only the webhook can have triggered the sync.
func TestCommitWebhookBadgeStatus(t *testing.T) {
	dir := t.TempDir()
	repo, err := newGitServer(t).CreateRepo("acme/app")
	if err != nil {
		t.Fatal(err)
	}
	sha1 := commit(t, repo, "one")
	statuses := newStatusServer(t, "gh-status-token")
	writeFile(t, filepath.Join(dir, "github-token"), "gh-status-token\n")
	h := startHub(t, dir, hubOptions{flags: []string{
		"--github-api-url", statuses.URL, "--github-token-file", filepath.Join(dir, "github-token"),
		"--external-url", "https://hub.tether.test/",
	}})
	ag := startAgent(t, dir, h.url, "a1", h.token(t, "a1.token", "--agent", "a1"))
	ns := newNamespace(t, "webhook")
	createGitSync(t, ns, "app", repo.URL, "main", time.Hour)

	env := environment{hub: h, agent: ag, name: "a1", ns: ns, gitsync: "app", repoURL: repo.URL}
	waitApplied(t, ns, "one")
	h.waitConnected(t, "a1", true)
	waitBadge(t, h.badgeURL("a1", ns, "app"), "synced "+short(sha1))
	statuses.waitState(t, sha1, env.context(), "success")

	sha2 := env.webhookDeploy(t, func() string { return commit(t, repo, "two") }, sha1, "two")

	st := statuses.waitState(t, sha2, env.context(), "success")
	if st.Owner != "acme" || st.Repo != "app" {
		t.Errorf("status posted for %s/%s, want acme/app", st.Owner, st.Repo)
	}
	if !strings.HasPrefix(st.TargetURL, "https://hub.tether.test/#") {
		t.Errorf("status target_url %q does not link to the hub's page (--external-url)", st.TargetURL)
	}
}

// environment is one agent's GitSync as the hub sees it.
type environment struct {
	hub               *hubProc
	agent             *agentProc
	name, ns, gitsync string
	repoURL           string
}

// context is the commit-status context of the GitSync.
func (e environment) context() string { return "tether/" + e.name + "/" + e.ns + "/" + e.gitsync }

// webhookDeploy makes a commit (with value v) through newCommit, posts a
// push webhook with a bad signature (refused, nothing happens) and then a
// good one, and checks that the commit is applied and shown in both
// badges. It returns the new sha.
func (e environment) webhookDeploy(t *testing.T, newCommit func() string, before, v string) string {
	t.Helper()
	old, err := configValue(e.ns)
	if err != nil {
		t.Fatal(err)
	}
	sha := newCommit()
	payload := githubPush(e.repoURL, "main", before, sha)
	syncNows := e.agent.count("sync now from the hub")

	code, body := e.hub.hook(t, payload, false)
	if code != http.StatusUnauthorized {
		t.Fatalf("webhook with a bad signature: %d %s, want 401", code, body)
	}
	if got := e.hub.metric(t, `tether_hub_webhooks_total{provider="github",result="unauthorized"}`); got != 1 {
		t.Errorf("hub counted %v unauthorized webhooks, want 1", got)
	}
	if got, _ := configValue(e.ns); got != old {
		t.Fatalf("after a refused webhook the ConfigMap changed to %q", got)
	}

	start := time.Now()
	code, body = e.hub.hook(t, payload, true)
	if code != http.StatusAccepted || !strings.Contains(body, `"dispatched":1`) || !strings.Contains(body, `"gitsyncs":1`) {
		t.Fatalf("signed webhook: %d %s, want 202 with one GitSync dispatched", code, body)
	}
	waitApplied(t, e.ns, v)
	t.Logf("commit %s: webhook → applied in %s", short(sha), time.Since(start).Round(time.Millisecond))

	texts := waitBadge(t, e.hub.badgeURL(e.name, e.ns, e.gitsync), "synced "+short(sha))
	if texts[0] != e.gitsync {
		t.Errorf("badge label %q, want the GitSync's name %q", texts[0], e.gitsync)
	}
	texts = waitBadge(t, e.hub.commitBadgeURL(sha), e.name+"/"+e.ns+"/"+e.gitsync+" live")
	if texts[0] != "deploy "+short(sha) {
		t.Errorf("commit badge label %q, want %q", texts[0], "deploy "+short(sha))
	}
	// The hub relays over one ordered stream: had the refused webhook been
	// dispatched, its "sync now" would have arrived before this one. Each
	// "sync now" makes two lines: the channel's and the agent's.
	if got := e.agent.count("sync now from the hub") - syncNows; got != 2 {
		t.Errorf("agent logged %d 'sync now from the hub' lines for one signed and one refused webhook, want 2 (one message):\n%s",
			got, lastLines(e.agent.log(), 20))
	}
	return sha
}
