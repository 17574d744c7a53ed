package e2e

import (
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestBrowser renders the hub's page and both badges in headless Chromium
// after a sync: the page a person opens must name the agent, the GitSync
// and the commit, and the screenshots must show something. Without a
// session the page is the login form and names nothing.
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

	anonymous := headless(t, h.url+"/", "--dump-dom")
	if !strings.Contains(anonymous, `name="token"`) || strings.Contains(anonymous, "browser-agent") || strings.Contains(anonymous, short(sha)) {
		t.Errorf("the hub page without a session is not the bare login form:\n%s", anonymous)
	}
	keep(t, screenshot(t, dir, "hub-login", h.url+"/login", 1200, 500), "hub-login.png")

	page := signedIn(t, h)
	dom := headless(t, page+"/", "--dump-dom")
	for _, want := range []string{"browser-agent", "web-app", ns + "/web-app", short(sha), "connected", "Sign out"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the hub page's DOM lacks %q:\n%s", want, dom)
		}
	}
	if !strings.Contains(dom, `src="`+strings.TrimPrefix(badge, h.url+"/")+`"`) {
		t.Errorf("the hub page does not show the GitSync's badge %s", badge)
	}

	keep(t, screenshot(t, dir, "hub-page", page+"/", 1200, 800), "hub-page.png")
	keep(t, screenshot(t, dir, "gitsync-badge", badge, 1200, 800), "gitsync-badge.png")
	keep(t, screenshot(t, dir, "commit-badge", h.commitBadgeURL(sha), 1200, 800), "commit-badge.png")
}

// signedIn signs in at the hub's login form with its API token, as a
// person does, and returns the address of a proxy to the hub that carries
// that session's cookie: Chromium has no flag to fill in a form or to
// start with a cookie.
func signedIn(t *testing.T, h *hubProc) string {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(h.url+"/login", url.Values{"token": {h.apiToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	hub, _ := url.Parse(h.url)
	cookies := jar.Cookies(hub)
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("login: %d, cookies %v", resp.StatusCode, cookies)
	}
	proxy := httputil.NewSingleHostReverseProxy(hub)
	direct := proxy.Director
	proxy.Director = func(r *http.Request) {
		direct(r)
		r.AddCookie(cookies[0])
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}
