package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tether.dev/tether/internal/testenv"
)

// TestGiteaPullRequestStatus runs the merge-request flow against a real
// Git host: a push to a branch on Gitea, Gitea's own signed push webhook
// to the hub, the agent syncs the GitSync that follows the branch, the hub
// posts a commit status to Gitea, and the pull request for that branch
// shows it (read back through Gitea's API and seen in Chromium).
func TestGiteaPullRequestStatus(t *testing.T) {
	dir := t.TempDir()
	g := startGitea(t, dir)
	g.api(t, http.MethodPost, "/api/v1/user/repos", map[string]any{"name": "app", "default_branch": "main", "private": false}, nil, false)
	repoURL := g.url + "/" + g.user + "/app.git"

	local, err := testenv.InitRepo(filepath.Join(dir, "checkout"))
	if err != nil {
		t.Fatal(err)
	}
	sha1 := commit(t, local, "one")
	gitRun(t, local, "push", g.pushURL("app"), "main", "main:feature")

	writeFile(t, filepath.Join(dir, "gitea-token"), g.token+"\n")
	h := startHub(t, dir, hubOptions{flags: []string{
		"--github-api-url", g.url + "/api/v1", "--github-token-file", filepath.Join(dir, "gitea-token"),
		"--external-url", "https://hub.tether.test",
	}})
	startAgent(t, dir, h.url, "g1", h.token(t, "g1.token", "--agent", "g1"))
	nsMain, nsFeature := newNamespace(t, "gitea-main"), newNamespace(t, "gitea-feature")
	createGitSync(t, nsMain, "app", repoURL, "main", time.Hour)
	createGitSync(t, nsFeature, "app", repoURL, "feature", time.Hour)
	waitApplied(t, nsMain, "one")
	waitApplied(t, nsFeature, "one")
	waitBadge(t, h.badgeURL("g1", nsFeature, "app"), "synced "+short(sha1))

	// Gitea signs its deliveries (X-Gitea-Signature, X-Hub-Signature-256)
	// with this secret; it may call the hub because ALLOWED_HOST_LIST is
	// loopback.
	g.api(t, http.MethodPost, "/api/v1/repos/"+g.user+"/app/hooks", map[string]any{
		"type":   "gitea",
		"active": true,
		"events": []string{"push"},
		"config": map[string]string{"url": h.url + "/hooks/github", "content_type": "json", "secret": string(h.secret)},
	}, nil, false)

	if err := local.Branch("feature", sha1); err != nil {
		t.Fatal(err)
	}
	if err := local.Checkout("feature"); err != nil {
		t.Fatal(err)
	}
	sha2 := commit(t, local, "two")
	start := time.Now()
	gitRun(t, local, "push", g.pushURL("app"), "feature")
	waitApplied(t, nsFeature, "two")
	t.Logf("push to Gitea → Gitea webhook → hub → agent → applied in %s", time.Since(start).Round(time.Millisecond))
	if got := h.metric(t, `tether_hub_webhooks_total{provider="github",result="dispatched"}`); got < 1 {
		t.Errorf("the hub counted %v dispatched webhooks; the sync was not Gitea's webhook's doing", got)
	}
	if v, _ := configValue(nsMain); v != "one" {
		t.Errorf("a push to feature changed the GitSync of main: v=%q", v)
	}

	var pr struct {
		Number  int    `json:"number"`
		HTMLURL string `json:"html_url"`
	}
	g.api(t, http.MethodPost, "/api/v1/repos/"+g.user+"/app/pulls", map[string]any{
		"head": "feature", "base": "main", "title": "Deploy two", "body": "Tether shows where this is deployed.",
	}, &pr, false)

	context := "tether/g1/" + nsFeature + "/app"
	eventually(t, 2*time.Minute, "Gitea to hold the success status "+context+" for "+short(sha2), func() (bool, string) {
		var statuses []struct {
			State     string `json:"status"`
			Context   string `json:"context"`
			TargetURL string `json:"target_url"`
		}
		code, body := g.call(t, http.MethodGet, "/api/v1/repos/"+g.user+"/app/commits/"+sha2+"/statuses", nil, false)
		if code != 200 {
			return false, fmt.Sprint(code, string(body))
		}
		if err := jsonUnmarshal(body, &statuses); err != nil {
			return false, err.Error()
		}
		for _, s := range statuses {
			if s.Context == context && s.State == "success" && strings.HasPrefix(s.TargetURL, "https://hub.tether.test/#") {
				return true, ""
			}
		}
		return false, string(body)
	})

	prURL := fmt.Sprintf("%s/%s/app/pulls/%d", g.url, g.user, pr.Number)
	dom := headless(t, prURL, "--dump-dom")
	if !strings.Contains(dom, context) {
		t.Errorf("the pull request page %s does not show the status %s:\n%s", prURL, context, lastLines(dom, 60))
	}
	// Taller than the hub's: Gitea puts the checks below the conversation.
	keep(t, screenshot(t, dir, "gitea-pull-request", prURL, 1200, 1200), "gitea-pull-request.png")
}

// gitRun runs git in the repository's work tree.
func gitRun(t *testing.T, r *testenv.GitRepo, args ...string) {
	t.Helper()
	if out, err := r.Git(args...); err != nil {
		t.Fatalf("git %s: %v: %s", args[0], err, out)
	}
}
