package hub

import (
	"net/http"
	"strings"
	"testing"

	"tether.dev/tether/channel/channelpb"
)

func TestBadgePerState(t *testing.T) {
	s, url, _ := newHub(t, Options{})
	s.Connected("prod", &channelpb.Hello{AgentName: "prod", Version: "v1"})
	mustReport(t, s, "prod", rep("synced", 1, "synced", shaA, shaA))
	mustReport(t, s, "prod", rep("drifted", 1, "drifted", shaA, shaA))
	mustReport(t, s, "prod", rep("failed", 1, "failed", shaA, shaB))
	mustReport(t, s, "prod", rep("progressing", 1, "progressing", shaA, shaB))
	mustReport(t, s, "prod", rep("weird", 1, "", "", ""))
	s.Connected("gone", &channelpb.Hello{AgentName: "gone"})
	mustReport(t, s, "gone", rep("web", 1, "synced", shaA, shaA))
	s.Disconnected("gone")

	cases := []struct{ path, want string }{
		{"/badge/prod/apps/synced.svg", "synced|synced aaaaaaa"},
		{"/badge/prod/apps/drifted.svg", "drifted|drifted"},
		{"/badge/prod/apps/failed.svg", "failed|failed"},
		{"/badge/prod/apps/progressing.svg", "progressing|progressing"},
		{"/badge/prod/apps/weird.svg", "weird|unknown"},
		{"/badge/prod/apps/never-reported.svg", "never-reported|unknown"},
		{"/badge/gone/apps/web.svg", "web|offline"},
	}
	for _, c := range cases {
		resp, body := get(t, url+c.path)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", c.path, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "image/svg+xml" {
			t.Errorf("%s: Content-Type %q", c.path, ct)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s: Cache-Control %q", c.path, cc)
		}
		if got := strings.Join(svgTexts(t, body), "|"); got != c.want {
			t.Errorf("%s: texts %q, want %q", c.path, got, c.want)
		}
	}
	if resp, _ := get(t, url+"/badge/prod/apps/synced.png"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("non-svg badge: %d", resp.StatusCode)
	}
}

func TestBadgeEscapesNames(t *testing.T) {
	s, url, _ := newHub(t, Options{})
	s.Connected("prod", &channelpb.Hello{})
	mustReport(t, s, "prod", rep(`<b>x</b>&"'`, 1, "failed", "", ""))
	_, body := get(t, url+"/badge/prod/apps/"+`%3Cb%3Ex%3C%2Fb%3E&%22%27`+".svg")
	if strings.Contains(body, "<b>") {
		t.Fatalf("unescaped name in the SVG:\n%s", body)
	}
	if got := svgTexts(t, body); len(got) != 2 || got[0] != `<b>x</b>&"'` {
		t.Errorf("texts %q", got)
	}
}

func TestCommitBadge(t *testing.T) {
	s, url, _ := newHub(t, Options{})
	s.Connected("prod", &channelpb.Hello{})
	s.Connected("staging", &channelpb.Hello{})
	mustReport(t, s, "prod", rep("web", 1, "synced", shaA, shaA))
	mustReport(t, s, "staging", rep("web", 1, "synced", shaA, shaA))
	mustReport(t, s, "staging", rep("web", 2, "progressing", shaA, shaB))
	mustReport(t, s, "staging", rep("api", 1, "failed", "", shaB))
	fork := rep("fork", 1, "synced", shaB, shaB)
	fork.SourceUrl = "https://git.example.com/someone/fork.git"
	mustReport(t, s, "prod", fork)

	cases := []struct{ path, want string }{
		{"/badge/commit/" + shaA + ".svg", "deploy aaaaaaa|prod/apps/web live|staging/apps/web live"},
		{"/badge/commit/" + shaB + ".svg?repo=" + "git@GIT.example.com:team/app", "deploy bbbbbbb|staging/apps/api failed|staging/apps/web applying"},
		{"/badge/commit/" + shaB[:7] + ".svg", "deploy bbbbbbb|prod/apps/fork live|staging/apps/api failed|staging/apps/web applying"},
		{"/badge/commit/cccccccccccccccccccccccccccccccccccccccc.svg", "deploy ccccccc|not deployed"},
	}
	for _, c := range cases {
		resp, body := get(t, url+c.path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/svg+xml" {
			t.Errorf("%s: %d %s", c.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if got := strings.Join(svgTexts(t, body), "|"); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.path, got, c.want)
		}
	}
	// Once staging applied B, A is no longer live there.
	mustReport(t, s, "staging", rep("web", 3, "synced", shaB, shaB))
	_, body := get(t, url+"/badge/commit/"+shaA+".svg")
	if got := strings.Join(svgTexts(t, body), "|"); got != "deploy aaaaaaa|prod/apps/web live" {
		t.Errorf("after B: %q", got)
	}
}
