package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestBrowser renders the hub's page and both badges in headless Chromium
// after a sync: the page a person opens must name the agent, the GitSync
// and the commit, and the screenshots must show something.
func TestBrowser(t *testing.T) {
	dir := t.TempDir()
	repo, err := newGitServer(t).CreateRepo("acme/app")
	if err != nil {
		t.Fatal(err)
	}
	sha := commit(t, repo, "one")
	h := startHub(t, dir, hubOptions{})
	startAgent(t, dir, h.url, "browser-agent", h.token(t, "agent.token", "--agent", "browser-agent"))
	ns := newNamespace(t, "browser")
	createGitSync(t, ns, "web-app", repo.URL, "main", time.Hour)
	waitApplied(t, ns, "one")
	badge := h.badgeURL("browser-agent", ns, "web-app")
	waitBadge(t, badge, "synced "+short(sha))
	waitBadge(t, h.commitBadgeURL(sha), "browser-agent/"+ns+"/web-app live")

	dom := headless(t, h.url+"/", "--dump-dom")
	for _, want := range []string{"browser-agent", "web-app", ns + "/web-app", short(sha), "connected"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the hub page's DOM lacks %q:\n%s", want, dom)
		}
	}
	if !strings.Contains(dom, `src="`+strings.TrimPrefix(badge, h.url+"/")+`"`) {
		t.Errorf("the hub page does not show the GitSync's badge %s", badge)
	}

	keep(t, screenshot(t, dir, "hub-page", h.url+"/", 1200, 800), "hub-page.png")
	keep(t, screenshot(t, dir, "gitsync-badge", badge, 1200, 800), "gitsync-badge.png")
	keep(t, screenshot(t, dir, "commit-badge", h.commitBadgeURL(sha), 1200, 800), "commit-badge.png")
}
