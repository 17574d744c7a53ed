package hub

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/store"
	"tether.dev/tether/internal/pgtest"
)

// sharedHubs starts n hubs on one PostgreSQL, each a replica served on
// loopback, and returns them with their base URLs.
func sharedHubs(t *testing.T, n int) ([]*Server, []string) {
	t.Helper()
	dsn := pgtest.URL(t)
	var hubs []*Server
	var bases []string
	for i := range n {
		s, base, _ := newHub(t, Options{DB: dsn, HubID: fmt.Sprintf("hub-%d", i)})
		if err := s.StartReplicas(context.Background(), ReplicaOptions{PeerURL: base}); err != nil {
			t.Fatal(err)
		}
		hubs = append(hubs, s)
		bases = append(bases, base)
	}
	return hubs, bases
}

// login signs in through base's login form, as a browser does, and
// returns the session cookie.
func login(t *testing.T, base, token string) *http.Cookie {
	t.Helper()
	resp, _ := postForm(t, browser(t), base+"/login", url.Values{"token": {token}}, base)
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("login at %s: %d, cookies %v", base, resp.StatusCode, resp.Cookies())
	}
	return resp.Cookies()[0]
}

// getWith is a GET sending only the cookie (nil for none): each replica
// is asked alike, whatever a cookie jar would do with ports.
func getWith(t *testing.T, u string, c *http.Cookie) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if c != nil {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func logout(t *testing.T, base string, c *http.Cookie) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/logout", nil)
	req.Header.Set("Origin", base)
	req.AddCookie(c)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout at %s: %d", base, resp.StatusCode)
	}
}

// rendered is the pages' time of rendering ("refreshed 2026-…Z"): the
// one thing legitimately per request, as two requests to one hub a
// second apart differ in it too.
var rendered = regexp.MustCompile(`refreshed \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)

// TestReplicasShareSessionsAndEvents: three hubs on one PostgreSQL serve
// one hub. A login at A is good at B and C; a logout at B ends it at A;
// revoking the token ends its sessions at all three. Events sent to A are
// listed by B's and C's API and pages. Page, GitSync page, API and badges
// are byte for byte the same from each. A project's session sees its own
// GitSync's events, at any replica, and not another project's.
func TestReplicasShareSessionsAndEvents(t *testing.T) {
	ctx := context.Background()
	hubs, bases := sharedHubs(t, 3)
	a, b, c := hubs[0], hubs[1], hubs[2]

	// The agent's stream is on A; its reports land on A and C.
	if err := a.Store().CreateProject(ctx, "shop", []string{"https://git.example.com/shop/web"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Store().CreateProject(ctx, "billing", []string{"https://git.example.com/billing/api"}); err != nil {
		t.Fatal(err)
	}
	a.ChannelSink().Connected("prod", &channelpb.Hello{AgentName: "prod", Version: "v1"})
	shop := rep("shop-web", 1, "synced", shaA, shaA)
	shop.SourceUrl = "https://git.example.com/shop/web.git"
	billing := rep("billing-api", 1, "failed", shaA, shaB)
	billing.SourceUrl, billing.Message = "https://git.example.com/billing/api.git", "apply failed"
	for _, r := range []struct {
		s   *Server
		rep *channelpb.SyncReport
	}{{a, shop}, {c, billing}} {
		if stored, err := r.s.ChannelSink().Report(ctx, "prod", r.rep); err != nil || !stored {
			t.Fatalf("report %s: %v, %v", r.rep.GetName(), stored, err)
		}
	}
	warn := func(gs, object, message string) *channelpb.WarningEvent {
		return &channelpb.WarningEvent{GitsyncNamespace: "apps", GitsyncName: gs, Kind: "Pod", Namespace: "shop", Name: object,
			Reason: "BackOff", Message: message, Count: 2, FirstUnixMs: 1000, LastUnixMs: 2000}
	}
	if err := a.Events(ctx, "prod", &channelpb.WarningEvents{Events: []*channelpb.WarningEvent{
		warn("shop-web", "web-1", "Back-off pulling image shop"), warn("billing-api", "api-1", "billing quota exceeded"),
	}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Events(ctx, "prod", &channelpb.WarningEvents{Events: []*channelpb.WarningEvent{warn("shop-web", "web-1", "Back-off pulling image shop")}}); err != nil {
		t.Fatal(err)
	}

	// An operator signs in at A; the cookie opens B's and C's page.
	op := apiToken(t, a)
	ck := login(t, bases[0], op)
	for i, base := range bases {
		code, body := getWith(t, base+"/", ck)
		if code != http.StatusOK || strings.Contains(body, `action="login"`) || !strings.Contains(body, "shop-web") || !strings.Contains(body, "Sign out") {
			t.Errorf("replica %d's page with A's session: %d", i, code)
		}
	}

	// Events sent to A (and folded with B's) are listed by every replica.
	for i, base := range bases {
		var evs struct{ Events []EventJSON }
		decode(t, base+"/api/v1/agents/prod/gitsyncs/apps/shop-web/events", op, &evs)
		if len(evs.Events) != 1 || evs.Events[0].Count != 4 || evs.Events[0].Message != "Back-off pulling image shop" {
			t.Errorf("replica %d's events of shop-web: %+v", i, evs.Events)
		}
		if _, page := getAs(t, base+"/gitsyncs/prod/apps/billing-api", op); !strings.Contains(page, "billing quota exceeded") {
			t.Errorf("replica %d's GitSync page lacks the event sent to A", i)
		}
	}

	// Byte for byte the same from each replica.
	routes := []string{"/", "/gitsyncs/prod/apps/shop-web", "/gitsyncs/prod/apps/billing-api", "/api/v1/gitsyncs", "/api/v1/agents",
		"/api/v1/agents/prod/gitsyncs/apps/shop-web/events", "/api/v1/agents/prod/gitsyncs/apps/billing-api/events",
		"/api/v1/commits/" + shaA, "/badge/prod/apps/shop-web.svg", "/badge/prod/apps/billing-api.svg"}
	for _, route := range routes {
		var first string
		for i, base := range bases {
			code, body := getWith(t, base+route, ck)
			if code != http.StatusOK {
				t.Errorf("%s at replica %d: %d", route, i, code)
			}
			body = rendered.ReplaceAllString(body, "refreshed (time)")
			if i == 0 {
				first = body
			} else if body != first {
				t.Errorf("%s differs between replica 0 and %d:\n%s\n---\n%s", route, i, first, body)
			}
		}
	}

	// Someone who may not: shop's reader, signed in at B, reads shop's
	// events at every replica, and billing's at none; no session reads
	// nothing.
	shopReader := scoped(t, a, store.KindProject, "shop", "read")
	sck := login(t, bases[1], shopReader)
	for i, base := range bases {
		if code, body := getWith(t, base+"/api/v1/agents/prod/gitsyncs/apps/shop-web/events", sck); code != http.StatusOK || !strings.Contains(body, "web-1") {
			t.Errorf("shop's session at replica %d, shop's events: %d %s", i, code, body)
		}
		for _, route := range []string{"/api/v1/agents/prod/gitsyncs/apps/billing-api/events", "/gitsyncs/prod/apps/billing-api"} {
			if code, body := getWith(t, base+route, sck); code != http.StatusNotFound || strings.Contains(body, "quota") {
				t.Errorf("shop's session at replica %d, %s: %d %s", i, route, code, body)
			}
		}
		if code, body := getWith(t, base+"/", sck); strings.Contains(body, "billing-api") {
			t.Errorf("shop's page at replica %d names billing's GitSync (%d)", i, code)
		}
		if code, _ := getWith(t, base+"/api/v1/agents/prod/gitsyncs/apps/shop-web/events", nil); code != http.StatusUnauthorized {
			t.Errorf("no session at replica %d: %d", i, code)
		}
	}

	// Logout at B ends A's session everywhere.
	logout(t, bases[1], ck)
	for i, base := range bases {
		if code, body := getWith(t, base+"/", ck); code != http.StatusUnauthorized || !strings.Contains(body, `action="login"`) {
			t.Errorf("replica %d after the logout at B: %d", i, code)
		}
	}

	// Revoking the token ends its sessions at every replica at once.
	ck = login(t, bases[2], op)
	if code, _ := getWith(t, bases[0]+"/", ck); code != http.StatusOK {
		t.Fatalf("a new session at A: %d", code)
	}
	if _, err := c.Store().RevokeTokens(ctx, store.KindAPI, "reader"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Store().RevokeTokens(ctx, store.KindProject, "shop"); err != nil {
		t.Fatal(err)
	}
	for i, base := range bases {
		for name, cookie := range map[string]*http.Cookie{"operator": ck, "shop": sck} {
			if code, _ := getWith(t, base+"/", cookie); code != http.StatusUnauthorized {
				t.Errorf("the %s's session at replica %d after its token's revocation: %d", name, i, code)
			}
		}
	}
}

// TestRestartKeepsSessionsAndEvents: a hub restarted on its SQLite file
// keeps its page's sessions and its GitSyncs' events.
func TestRestartKeepsSessionsAndEvents(t *testing.T) {
	ctx := context.Background()
	db := t.TempDir() + "/hub.db"
	s, base, _ := newHub(t, Options{DB: db})
	mustReport(t, s, "prod", rep("web", 1, "synced", shaA, shaA))
	if err := s.Events(ctx, "prod", &channelpb.WarningEvents{Events: []*channelpb.WarningEvent{warningEvent("web", "web-1", "Back-off", 1)}}); err != nil {
		t.Fatal(err)
	}
	tok := apiToken(t, s)
	ck := login(t, base, tok)
	s.Close()
	_, base, _ = newHub(t, Options{DB: db})
	if code, _ := getWith(t, base+"/", ck); code != http.StatusOK {
		t.Errorf("the session after a restart: %d", code)
	}
	if resp, body := getAs(t, base+"/api/v1/agents/prod/gitsyncs/apps/web/events", tok); resp.StatusCode != http.StatusOK || !strings.Contains(body, "web-1") {
		t.Errorf("the events after a restart: %d %s", resp.StatusCode, body)
	}
}
