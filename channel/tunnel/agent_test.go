package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"

	"tether.dev/tether/channel/channelpb"
)

// apiRecorder stands in for the API server's front door: it records what
// reaches it. (Authorization and RBAC are the real API server's, in the
// channel package's kubectl tests; this checks what the agent sends.)
type apiRecorder struct {
	mu   sync.Mutex
	reqs []*http.Request
	body []string
}

func (a *apiRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.reqs = append(a.reqs, r)
	a.body = append(a.body, string(b))
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"kind":"APIVersions"}`))
}

func (a *apiRecorder) last(t *testing.T) (*http.Request, string) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.reqs) == 0 {
		t.Fatal("nothing reached the API server")
	}
	return a.reqs[len(a.reqs)-1], a.body[len(a.body)-1]
}

func (a *apiRecorder) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.reqs)
}

func newTestAgent(t *testing.T) (*Agent, *apiRecorder, *link) {
	rec := &apiRecorder{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	a, err := NewAgent(AgentOptions{Config: &rest.Config{Host: srv.URL, BearerToken: "agent-own-token"}, Namespace: "tether-system"})
	if err != nil {
		t.Fatal(err)
	}
	acc, err := ParseAccess([]byte(example))
	if err != nil {
		t.Fatal(err)
	}
	a.SetAccess(acc, nil)
	return a, rec, newLink(t, a.serve, 8)
}

// roundTrip sends req through the link and returns the status and body.
func roundTrip(t *testing.T, l *link, req *channelpb.TunnelRequest, body string) (int32, string) {
	t.Helper()
	st, err := l.hub.Open(context.Background(), req, body == "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if body != "" {
		if _, err := st.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
		if err := st.CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := st.Response(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for {
		chunk, _, err := st.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, chunk...)
	}
	return resp.GetStatus(), string(out)
}

// TestAgentStripsCallerIdentity: whatever headers the hub forwards, the
// API server sees the agent's own credentials (to impersonate with) and
// exactly the granted identity.
func TestAgentStripsCallerIdentity(t *testing.T) {
	_, rec, l := newTestAgent(t)
	code, _ := roundTrip(t, l, &channelpb.TunnelRequest{
		Method: "POST", Path: "/apis/authentication.k8s.io/v1/selfsubjectreviews", RawQuery: "timeout=32s",
		Caller: user("alice"),
		Headers: []*channelpb.Header{
			{Name: "Authorization", Values: []string{"Bearer stolen"}},
			{Name: "impersonate-user", Values: []string{"system:admin"}},
			{Name: "Impersonate-Group", Values: []string{"system:masters"}},
			{Name: "Impersonate-Uid", Values: []string{"0"}},
			{Name: "Impersonate-Extra-Scopes", Values: []string{"all"}},
			{Name: "Cookie", Values: []string{"session=x"}},
			{Name: "Content-Type", Values: []string{"application/json"}},
			{Name: "Content-Length", Values: []string{"2"}},
		},
	}, "{}")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	r, body := rec.last(t)
	if got := r.Header.Get("Authorization"); got != "Bearer agent-own-token" {
		t.Errorf("Authorization %q", got)
	}
	if got := r.Header.Values("Impersonate-User"); !slices.Equal(got, []string{"tether:user:alice"}) {
		t.Errorf("Impersonate-User %q", got)
	}
	if got := r.Header.Values("Impersonate-Group"); !slices.Equal(got, []string{"tether:users"}) {
		t.Errorf("Impersonate-Group %q", got)
	}
	for _, h := range []string{"Impersonate-Uid", "Impersonate-Extra-Scopes", "Cookie"} {
		if r.Header.Get(h) != "" {
			t.Errorf("%s reached the API server", h)
		}
	}
	if r.Header.Get("Content-Type") != "application/json" || body != "{}" || r.URL.RawQuery != "timeout=32s" || r.Method != "POST" {
		t.Errorf("request %s %s?%s %q %q", r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type"), body)
	}
}

// TestAgentRefuses: callers without a grant, a bad or missing access
// file, and malformed requests never reach the API server.
func TestAgentRefuses(t *testing.T) {
	a, rec, l := newTestAgent(t)
	status := func(body string) (code int, message string) {
		var s struct {
			Kind    string `json:"kind"`
			Code    int    `json:"code"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal([]byte(body), &s); err != nil || s.Kind != "Status" {
			t.Fatalf("not a Status: %q", body)
		}
		return s.Code, s.Message
	}
	check := func(name string, req *channelpb.TunnelRequest, want int32, wantMsg string) {
		t.Helper()
		code, body := roundTrip(t, l, req, "")
		c, msg := status(body)
		if code != want || int32(c) != want || !containsStr(msg, wantMsg) {
			t.Errorf("%s: %d %q, want %d mentioning %q", name, code, msg, want, wantMsg)
		}
	}
	get := func(c *channelpb.TunnelCaller, path string) *channelpb.TunnelRequest {
		return &channelpb.TunnelRequest{Method: "GET", Path: path, Caller: c}
	}
	check("no grant", get(user("bob"), "/api"), 403, `user "bob": refused: not granted in ConfigMap tether-system/tether-access`)
	check("a project's name as a user", get(user("shop"), "/api"), 403, "not granted")
	check("no caller", get(nil, "/api"), 403, "an unnamed caller")
	check("dot-dot", get(user("alice"), "/api/../apis"), 400, "is not an API path")
	check("relative path", get(user("alice"), "api"), 400, "is not an API path")
	check("bad method", &channelpb.TunnelRequest{Method: "get me", Path: "/api", Caller: user("alice")}, 400, "not an HTTP method")
	a.SetAccess(nil, errors.New("access.yaml: unknown field"))
	check("bad file", get(user("alice"), "/api"), 403, "is invalid")
	a.setAbsent()
	check("no ConfigMap", get(user("alice"), "/api"), 403, "grants no tunnel access")
	if n := rec.count(); n != 0 {
		t.Errorf("%d refused requests reached the API server", n)
	}
}

func containsStr(s, sub string) bool { return strings.Contains(s, sub) }

// TestForwardDropsCookies: an answer from the cluster side cannot set a
// cookie on the hub's origin (where the hub's page keeps its session).
func TestForwardDropsCookies(t *testing.T) {
	l := newLink(t, func(s *Stream, _ *channelpb.TunnelRequest) {
		defer s.Close()
		_ = s.Respond(s.Context(), &channelpb.TunnelResponse{Status: 200, Headers: []*channelpb.Header{
			{Name: "Set-Cookie", Values: []string{"tether_session=attacker"}},
			{Name: "Content-Type", Values: []string{"application/json"}},
		}})
		_, _ = s.Write([]byte("{}"))
		_ = s.CloseWrite()
	}, 4)
	w := httptest.NewRecorder()
	Forward(w, httptest.NewRequest("GET", "/k8s-proxy/prod/api", nil), l.hub, "/api", user("alice"))
	if w.Code != 200 || w.Body.String() != "{}" || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q %v", w.Code, w.Body, w.Header())
	}
	if c := w.Header().Values("Set-Cookie"); len(c) != 0 {
		t.Errorf("Set-Cookie passed: %q", c)
	}
}
