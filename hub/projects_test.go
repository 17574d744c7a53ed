package hub

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/store"
)

// twoProjects is one agent running a GitSync of each of two projects,
// spelled differently from the projects' own URLs (the hub matches
// repositories as giturl does).
func twoProjects(t *testing.T, s *Server) {
	t.Helper()
	ctx := context.Background()
	if err := s.Store().CreateProject(ctx, "shop", []string{"https://git.example.com/Shop/web"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Store().CreateProject(ctx, "billing", []string{"git@git.example.com:billing/api.git"}); err != nil {
		t.Fatal(err)
	}
	s.Connected("prod", &channelpb.Hello{AgentName: "prod"})
	shop := rep("shop-web", 1, "synced", shaA, shaA)
	shop.SourceUrl = "ssh://git@git.example.com/shop/web.git"
	billing := rep("billing-api", 1, "synced", shaB, shaB)
	billing.SourceUrl = "https://git.example.com/billing/api"
	mustReport(t, s, "prod", shop)
	mustReport(t, s, "prod", billing)
}

func scoped(t *testing.T, s *Server, kind, name string, actions ...string) string {
	t.Helper()
	tok, err := s.Store().CreateScopedToken(context.Background(), kind, name, actions)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func gitsyncNames(t *testing.T, base, token string) []string {
	t.Helper()
	var out struct{ GitSyncs []GitSyncJSON }
	decode(t, base+"/api/v1/gitsyncs", token, &out)
	var names []string
	for _, g := range out.GitSyncs {
		names = append(names, g.Name)
	}
	return names
}

func postAs(t *testing.T, u, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestProjectsSeeOnlyTheirGitSyncs(t *testing.T) {
	s, base, d := newHub(t, Options{})
	twoProjects(t, s)
	shop := scoped(t, s, store.KindProject, "shop", "read", "resync")
	billing := scoped(t, s, store.KindProject, "billing", "read")
	alice := scoped(t, s, store.KindUser, "alice", "read")
	ops := apiToken(t, s)

	for _, c := range []struct {
		who, token string
		want       []string
	}{
		{"shop", shop, []string{"shop-web"}},
		{"billing", billing, []string{"billing-api"}},
		{"user alice", alice, []string{"billing-api", "shop-web"}},
		{"operator", ops, []string{"billing-api", "shop-web"}},
	} {
		if got := gitsyncNames(t, base, c.token); !slices.Equal(got, c.want) {
			t.Errorf("%s sees %v on the API, want %v", c.who, got, c.want)
		}
	}
	// The page, for a project signed in through the login form.
	c := browser(t)
	if resp, _ := postForm(t, c, base+"/login", url.Values{"token": {billing}}, base); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("billing login: %d", resp.StatusCode)
	}
	_, page := fetch(t, c, base+"/")
	if !strings.Contains(page, "billing-api") || strings.Contains(page, "shop-web") {
		t.Errorf("billing's page shows the wrong GitSyncs:\n%s", page)
	}
	if resp, _ := fetch(t, c, base+"/gitsyncs/prod/apps/shop-web"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("billing opens shop's GitSync page: %d", resp.StatusCode)
	}
	// Commits: only the project's own deployments.
	var commit CommitJSON
	decode(t, base+"/api/v1/commits/"+shaA, billing, &commit)
	if len(commit.Environments) != 0 {
		t.Errorf("billing sees shop's commit: %+v", commit.Environments)
	}
	if resp, _ := getAs(t, base+"/metrics", shop); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a project reads the hub's metrics: %d", resp.StatusCode)
	}

	resync := func(name string) string { return base + "/api/v1/agents/prod/gitsyncs/apps/" + name + "/resync" }
	for _, c := range []struct {
		what, u, token string
		want           int
	}{
		{"shop resyncs billing's", resync("billing-api"), shop, http.StatusForbidden},
		{"billing (read only) resyncs its own", resync("billing-api"), billing, http.StatusForbidden},
		{"a user without resync", resync("shop-web"), alice, http.StatusForbidden},
	} {
		if got := postAs(t, c.u, c.token); got != c.want {
			t.Errorf("%s: %d, want %d", c.what, got, c.want)
		}
	}
	if got := d.calls(); len(got) != 0 {
		t.Fatalf("refused resyncs reached the agent: %q", got)
	}
	if got := postAs(t, resync("shop-web"), shop); got != http.StatusAccepted {
		t.Errorf("shop resyncs its own: %d", got)
	}
	if got := d.calls(); len(got) != 1 || !strings.Contains(got[0], "apps/shop-web") {
		t.Errorf("SyncNow calls: %q", got)
	}
}

func TestScopedTokenActions(t *testing.T) {
	s, base, _ := newHub(t, Options{})
	twoProjects(t, s)
	proxyOnly := scoped(t, s, store.KindProject, "shop", "proxy")
	if resp, _ := getAs(t, base+"/api/v1/gitsyncs", proxyOnly); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a token without read reads: %d", resp.StatusCode)
	}
	c := browser(t)
	if resp, _ := postForm(t, c, base+"/login", url.Values{"token": {proxyOnly}}, base); resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("a token without read signs in: %d", resp.StatusCode)
	}
	// A project's repositories added later count at once.
	shop := scoped(t, s, store.KindProject, "shop", "read")
	if err := s.Store().CreateProject(context.Background(), "shop", []string{"https://git.example.com/billing/api"}); err != nil {
		t.Fatal(err)
	}
	if got := gitsyncNames(t, base, shop); !slices.Equal(got, []string{"billing-api", "shop-web"}) {
		t.Errorf("after adding a repository shop sees %v", got)
	}
}

func TestParseActions(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []Action
		err  string
	}{
		{"read", []Action{ActionRead}, ""},
		{"read, resync,proxy,read", []Action{ActionRead, ActionResync, ActionProxy}, ""},
		{"read,admin", nil, `unknown action "admin"`},
		{"", nil, "at least one action"},
		{",", nil, "at least one action"},
	} {
		got, err := ParseActions(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseActions(%q) error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseActions(%q) = %v, %v", c.in, got, err)
		}
	}
}
