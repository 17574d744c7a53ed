package hub

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/server"
	"tether.dev/tether/hub/store"
	"tether.dev/tether/internal/testenv"
)

// serveLikeTetherHub serves s as `tether hub` does: the channel server on
// one port, the hub's handler as its fallback. It returns host:port.
func serveLikeTetherHub(t testing.TB, s *Server, opts server.ServerOptions) string {
	t.Helper()
	opts.Authenticator, opts.Sink, opts.Fallback, opts.Logger = s, s, s.Handler(), s.log
	ch := server.NewServer(opts)
	s.SetDispatcher(ch)
	s.SetTunnels(ch)
	hs := ch.HTTPServer(nil)
	addr := strings.TrimPrefix(listenServer(t, hs), "http://")
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // stop at once
		ch.Stop(ctx)
	})
	return addr
}

// listenServer serves hs on a loopback port until the test ends.
func listenServer(t testing.TB, hs *http.Server) string {
	t.Helper()
	l := listener(t)
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	return "http://" + l.Addr().String()
}

// rawStream opens a channel stream over h2c with token, as no real agent
// would use it.
func rawStream(t *testing.T, addr, token string) channelpb.AgentChannel_ConnectClient {
	t.Helper()
	st, closeStream, err := testenv.RawStream(addr, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeStream)
	return st
}

// connect opens a channel stream with token and sends hello; it returns
// the status the stream ends with, or OK once the hub welcomed it.
func connect(t *testing.T, addr, token, hello string) *status.Status {
	t.Helper()
	st := rawStream(t, addr, token)
	if err := st.Send(&channelpb.AgentMessage{Msg: &channelpb.AgentMessage_Hello{Hello: &channelpb.Hello{AgentName: hello}}}); err != nil && err != io.EOF {
		return status.Convert(err)
	}
	m, err := st.Recv()
	if err != nil {
		return status.Convert(err)
	}
	if m.GetWelcome() == nil {
		t.Fatalf("first message %v, want a Welcome", m)
	}
	return status.New(codes.OK, "")
}

// The data a refusal must not leak: every distinctive value the hub holds.
var secretsOfTheHub = []string{"prod-eu", "uid-7f3a", "team/app", "deploy/prod", shaA[:7], "cm-private", "boom: secret error"}

// seed fills a hub with one agent and a failing GitSync that names all of
// secretsOfTheHub.
func seed(t *testing.T, s *Server) {
	t.Helper()
	s.Connected("prod-eu", &channelpb.Hello{AgentName: "prod-eu", Version: "v1", ClusterUid: "uid-7f3a"})
	r := rep("web", 1, "failed", shaA, shaA)
	r.Message = "boom: secret error"
	r.Drift = &channelpb.DriftSummary{Count: 1, Objects: []*channelpb.DriftedObject{{Kind: "ConfigMap", Namespace: "apps", Name: "cm-private"}}}
	mustReport(t, s, "prod-eu", r)
}

// TestEveryEndpointRefusesBadTokens: every endpoint of the hub's port
// (hub/http.go and the channel), with no token, a wrong one, a revoked
// one, or a token of the other kind, is refused with 401 (or
// Unauthenticated) and answers nothing of the hub's data.
func TestEveryEndpointRefusesBadTokens(t *testing.T) {
	s, _, _ := newHub(t, Options{WebhookSecret: []byte("hook-secret")})
	seed(t, s)
	addr := serveLikeTetherHub(t, s, server.ServerOptions{})
	base := "http://" + addr
	ctx := context.Background()
	agentTok, _ := s.Store().CreateToken(ctx, store.KindAgent, "prod-eu")
	revoked, _ := s.Store().CreateToken(ctx, store.KindAPI, "gone")
	if _, err := s.Store().RevokeTokens(ctx, store.KindAPI, "gone"); err != nil {
		t.Fatal(err)
	}
	apiTok := apiToken(t, s)
	revokedAgent, _ := s.Store().CreateToken(ctx, store.KindAgent, "old")
	if _, err := s.Store().RevokeTokens(ctx, store.KindAgent, "old"); err != nil {
		t.Fatal(err)
	}

	endpoints := []struct{ method, path string }{
		{"GET", "/"},
		{"GET", "/api/v1/agents"},
		{"GET", "/api/v1/gitsyncs"},
		{"GET", "/api/v1/gitsyncs?agent=prod-eu"},
		{"GET", "/api/v1/commits/" + shaA},
		{"GET", "/metrics"},
		{"POST", "/api/v1/agents/prod-eu/gitsyncs/apps/web/resync"},
		{"POST", "/hooks/gitlab"},
		{"POST", "/hooks/github"},
		// The proxy: the hub refuses before any agent is asked.
		{"GET", "/k8s-proxy/prod-eu/api/v1/secrets"},
		{"DELETE", "/k8s-proxy/prod-eu/api/v1/namespaces/kube-system"},
	}
	badTokens := map[string]string{
		"no token":      "",
		"wrong token":   "not-a-token-at-all",
		"revoked token": revoked,
		"agent token":   agentTok,
	}
	for _, e := range endpoints {
		for name, tok := range badTokens {
			req, _ := http.NewRequest(e.method, base+e.path, strings.NewReader(`{"object_kind":"push"}`))
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("X-Gitlab-Token", tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s with %s: %d, want 401 or 403", e.method, e.path, name, resp.StatusCode)
			}
			for _, secret := range secretsOfTheHub {
				if strings.Contains(string(body), secret) {
					t.Errorf("%s %s with %s: the refusal shows %q", e.method, e.path, name, secret)
				}
			}
		}
	}

	// The channel takes agent tokens only.
	for name, tok := range map[string]string{"no token": "", "wrong token": "nope", "revoked agent token": revokedAgent, "API token": apiTok} {
		if st := connect(t, addr, tok, "prod-eu"); st.Code() != codes.Unauthenticated {
			t.Errorf("channel with %s: %v, want Unauthenticated", name, st)
		}
	}
	if st := connect(t, addr, agentTok, "staging"); st.Code() != codes.PermissionDenied {
		t.Errorf("channel with prod-eu's token, Hello as staging: %v, want PermissionDenied", st)
	}

	// The right tokens work, each where it belongs.
	for _, e := range endpoints[:6] {
		if resp, _ := getAs(t, base+e.path, apiTok); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with an API token: %d", e.path, resp.StatusCode)
		}
	}
	if st := connect(t, addr, agentTok, "prod-eu"); st.Code() != codes.OK {
		t.Errorf("channel with the agent's token: %v", st)
	}
	// Public: health and badges, which say no more than a status and a
	// short commit.
	if resp, body := get(t, base+"/healthz"); resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	for _, path := range []string{"/badge/prod-eu/apps/web.svg", "/badge/commit/" + shaA + ".svg"} {
		resp, body := get(t, base+path)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
		for _, secret := range []string{"boom", "secret error", "cm-private", "uid-7f3a", "team/app", shaA[7:]} {
			if strings.Contains(body, secret) {
				t.Errorf("badge %s shows %q", path, secret)
			}
		}
	}
}

// TestPublicRead: with PublicRead the page, the API and /metrics answer
// anyone; writes still need an API token.
func TestPublicRead(t *testing.T) {
	s, base, _ := newHub(t, Options{PublicRead: true})
	seed(t, s)
	for _, path := range []string{"/", "/api/v1/agents", "/api/v1/gitsyncs", "/api/v1/commits/" + shaA, "/metrics"} {
		if resp, _ := get(t, base+path); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
	resp, err := http.Post(base+"/api/v1/agents/prod-eu/gitsyncs/apps/web/resync", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("resync without a token under PublicRead: %d", resp.StatusCode)
	}
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so the test sees them.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values, origin string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func fetch(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestLogin: the page's login form takes an API token and sets a session
// cookie (HttpOnly, SameSite=Strict, not the token); the session reads the
// page and the API until logout or until the token is revoked. Agent
// tokens, wrong tokens and cross-site posts get no session.
func TestLogin(t *testing.T) {
	s, base, _ := newHub(t, Options{})
	seed(t, s)
	ctx := context.Background()
	tok := apiToken(t, s)
	agentTok, _ := s.Store().CreateToken(ctx, store.KindAgent, "prod-eu")
	c := browser(t)

	resp, body := fetch(t, c, base+"/")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `<form method="post" action="login">`) {
		t.Fatalf("the page without a session: %d\n%s", resp.StatusCode, body)
	}
	if resp, body := fetch(t, c, base+"/login"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="token"`) {
		t.Fatalf("GET /login: %d", resp.StatusCode)
	}
	for name, bad := range map[string]string{"wrong": "nope", "agent": agentTok, "empty": ""} {
		resp, body := postForm(t, c, base+"/login", url.Values{"token": {bad}}, base)
		if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(body, "not a valid hub token") {
			t.Errorf("login with a %s token: %d, cookies %v", name, resp.StatusCode, resp.Cookies())
		}
	}
	if resp, _ := postForm(t, c, base+"/login", url.Values{"token": {tok}}, "https://evil.example"); resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("cross-site login: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}

	resp, _ = postForm(t, c, base+"/login", url.Values{"token": {tok}}, base)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "./" {
		t.Fatalf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", cookies)
	}
	ck := cookies[0]
	if ck.Name != sessionCookie || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure ||
		ck.Value == tok || strings.Contains(ck.Value, tok) || len(ck.Value) < 40 {
		t.Errorf("session cookie %+v", ck)
	}
	resp, body = fetch(t, c, base+"/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "prod-eu") || !strings.Contains(body, "Sign out") {
		t.Fatalf("the page with a session: %d", resp.StatusCode)
	}
	if resp, _ := fetch(t, c, base+"/api/v1/gitsyncs"); resp.StatusCode != http.StatusOK {
		t.Errorf("the API with a session: %d", resp.StatusCode)
	}
	// A session is not a token for writes.
	resp, _ = postForm(t, c, base+"/api/v1/agents/prod-eu/gitsyncs/apps/web/resync", nil, base)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("resync with a session: %d, want 401", resp.StatusCode)
	}

	resp, _ = postForm(t, c, base+"/logout", nil, base)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout: %d", resp.StatusCode)
	}
	if resp, _ := fetch(t, c, base+"/"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the page after logout: %d", resp.StatusCode)
	}
	// The old cookie, replayed, is dead too.
	old := browser(t)
	u, _ := url.Parse(base)
	old.Jar.SetCookies(u, []*http.Cookie{ck})
	if resp, _ := fetch(t, old, base+"/"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a logged-out session id: %d", resp.StatusCode)
	}

	// Revoking the token ends its sessions.
	c2 := browser(t)
	postForm(t, c2, base+"/login", url.Values{"token": {tok}}, "")
	if resp, _ := fetch(t, c2, base+"/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("second session: %d", resp.StatusCode)
	}
	if _, err := s.Store().RevokeTokens(ctx, store.KindAPI, "reader"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := fetch(t, c2, base+"/"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a session of a revoked token: %d", resp.StatusCode)
	}
}

// TestSecureCookie: behind HTTPS (an https external URL) the session
// cookie is Secure.
func TestSecureCookie(t *testing.T) {
	s, base, _ := newHub(t, Options{ExternalURL: "https://hub.example.com"})
	resp, _ := postForm(t, browser(t), base+"/login", url.Values{"token": {apiToken(t, s)}}, "https://hub.example.com")
	if cs := resp.Cookies(); resp.StatusCode != http.StatusSeeOther || len(cs) != 1 || !cs[0].Secure {
		t.Errorf("login behind HTTPS: %d, cookies %+v", resp.StatusCode, cs)
	}
}

func listener(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}
