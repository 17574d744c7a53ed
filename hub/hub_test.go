package hub

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/status"
	"tether.dev/tether/hub/store"
	"tether.dev/tether/internal/testenv"
)

const (
	shaA = "aaaaaaa111111111111111111111111111111111"
	shaB = "bbbbbbb222222222222222222222222222222222"
	repo = "https://git.example.com/team/app.git"
)

// dispatcher records SyncNow messages, and fails for agents in down.
type dispatcher struct {
	mu   sync.Mutex
	got  []string
	down map[string]bool
}

func (d *dispatcher) SyncNow(agent string, m *channelpb.SyncNow) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down[agent] {
		return errors.New("stream closed")
	}
	d.got = append(d.got, fmt.Sprintf("%s %s/%s %s %s", agent, m.GetNamespace(), m.GetName(), m.GetRepoUrl(), m.GetBranchOrTag()))
	return nil
}

func (d *dispatcher) calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.got...)
}

func listen(t testing.TB, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// newHub starts a hub on a fresh SQLite database (or on opt.DB when set),
// served on loopback.
func newHub(t testing.TB, opt Options) (*Server, string, *dispatcher) {
	t.Helper()
	if opt.DB == "" {
		opt.DB = filepath.Join(t.TempDir(), "hub.db")
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	d := &dispatcher{down: map[string]bool{}}
	s.SetDispatcher(d)
	return s, listen(t, s.Handler()), d
}

func rep(name string, version uint64, phase, rev, attempted string) *channelpb.SyncReport {
	r := &channelpb.SyncReport{Namespace: "apps", Name: name, StateVersion: version, SourceUrl: repo,
		Ref: "branch:main", Path: "deploy/prod", Phase: phase, Message: "",
		Drift: &channelpb.DriftSummary{}}
	if rev != "" {
		r.Revision = "main@sha1:" + rev
	}
	if attempted != "" {
		r.AttemptedRevision = "main@sha1:" + attempted
	}
	return r
}

func mustReport(t *testing.T, s *Server, agent string, r *channelpb.SyncReport) {
	t.Helper()
	stored, err := s.Report(context.Background(), agent, r)
	if err != nil || !stored {
		t.Fatalf("Report(%s/%s) = %v, %v", agent, r.GetName(), stored, err)
	}
}

// get is an anonymous GET: badges, /healthz.
func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	return getAs(t, url, "")
}

// getAs is a GET with token as its bearer token ("" for none).
func getAs(t *testing.T, url, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// apiToken makes an API token for a reader of the page and the API.
func apiToken(t testing.TB, s *Server) string {
	t.Helper()
	tok, err := s.Store().CreateToken(context.Background(), store.KindAPI, "reader")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// svgTexts returns the visible texts of a badge, failing on malformed XML.
func svgTexts(t *testing.T, svg string) []string {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(svg))
	var out []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("badge is not well-formed XML: %v\n%s", err, svg)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Local != "text" {
			continue
		}
		hidden := false
		for _, a := range se.Attr {
			hidden = hidden || a.Name.Local == "aria-hidden"
		}
		var s string
		if err := dec.DecodeElement(&s, &se); err != nil {
			t.Fatal(err)
		}
		if !hidden {
			out = append(out, s)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	s, _, _ := newHub(t, Options{})
	ctx := context.Background()
	tok, err := s.Store().CreateToken(ctx, store.KindAgent, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if name, err := s.Authenticate(ctx, tok); err != nil || name != "prod" {
		t.Fatalf("Authenticate = %q, %v", name, err)
	}
	api, _ := s.Store().CreateToken(ctx, store.KindAPI, "ci")
	if _, err := s.Authenticate(ctx, api); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("an API token opens the channel: %v", err)
	}
	if _, err := s.Store().RevokeTokens(ctx, store.KindAgent, "prod"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("revoked token: %v", err)
	}
}

func TestAPI(t *testing.T) {
	s, url, _ := newHub(t, Options{})
	s.Connected("prod", &channelpb.Hello{AgentName: "prod", Version: "v0.3.0", ClusterUid: "uid-1"})
	r := rep("web", 1757000000000000000, "drifted", shaA, shaA)
	r.Message = "1 object drifted"
	r.Drift = &channelpb.DriftSummary{Count: 1, Objects: []*channelpb.DriftedObject{{Kind: "ConfigMap", Namespace: "apps", Name: "cfg", Paths: []string{".data.x"}}}}
	r.Conditions = []*channelpb.Condition{{Type: "Ready", Status: "True", Reason: "Synced"}}
	r.Namespaces = []*channelpb.NamespaceCount{{Namespace: "apps", Objects: 3}}
	mustReport(t, s, "prod", r)
	s.Store().CreateToken(context.Background(), store.KindAgent, "never")
	tok := apiToken(t, s)

	var agents struct {
		Agents []map[string]any `json:"agents"`
	}
	decode(t, url+"/api/v1/agents", tok, &agents)
	if len(agents.Agents) != 2 {
		t.Fatalf("agents: %v", agents)
	}
	a := agents.Agents[1]
	if a["name"] != "prod" || a["connected"] != true || a["version"] != "v0.3.0" || a["clusterUID"] != "uid-1" || a["lastSeen"] == nil {
		t.Errorf("agent JSON: %v", a)
	}
	if n := agents.Agents[0]; n["name"] != "never" || n["connected"] != false {
		t.Errorf("agent JSON: %v", n)
	}

	var gs struct {
		GitSyncs []map[string]any `json:"gitsyncs"`
	}
	decode(t, url+"/api/v1/gitsyncs", tok, &gs)
	if len(gs.GitSyncs) != 1 {
		t.Fatalf("gitsyncs: %v", gs)
	}
	g := gs.GitSyncs[0]
	want := map[string]any{
		"agent": "prod", "namespace": "apps", "name": "web", "sourceURL": repo, "ref": "branch:main",
		"revision": "main@sha1:" + shaA, "commit": shaA, "phase": "drifted", "status": "drifted",
		"message": "1 object drifted", "driftCount": float64(1), "stateVersion": "1757000000000000000",
		"badge": "/badge/prod/apps/web.svg",
	}
	for k, v := range want {
		if g[k] != v {
			t.Errorf("gitsync %s = %v, want %v", k, g[k], v)
		}
	}
	if fmt.Sprint(g["drifted"]) != "[map[kind:ConfigMap name:cfg namespace:apps paths:[.data.x]]]" ||
		fmt.Sprint(g["namespaces"]) != "[map[namespace:apps objects:3]]" ||
		fmt.Sprint(g["conditions"]) != "[map[reason:Synced status:True type:Ready]]" {
		t.Errorf("gitsync details: %v %v %v", g["drifted"], g["namespaces"], g["conditions"])
	}

	var c struct {
		SHA          string           `json:"sha"`
		Environments []map[string]any `json:"environments"`
	}
	decode(t, url+"/api/v1/commits/"+shaA, tok, &c)
	if c.SHA != shaA || len(c.Environments) != 1 || c.Environments[0]["state"] != "live" ||
		c.Environments[0]["agent"] != "prod" || c.Environments[0]["repoURL"] != repo {
		t.Errorf("commit JSON: %+v", c)
	}
	if resp, _ := getAs(t, url+"/api/v1/commits/zz", tok); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad sha: %d", resp.StatusCode)
	}
}

func decode(t *testing.T, url, token string, v any) {
	t.Helper()
	resp, body := getAs(t, url, token)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %s\n%s", url, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, body)
	}
}

func TestResync(t *testing.T) {
	s, url, d := newHub(t, Options{})
	ctx := context.Background()
	apiToken, _ := s.Store().CreateToken(ctx, store.KindAPI, "ci")
	agentToken, _ := s.Store().CreateToken(ctx, store.KindAgent, "prod")
	s.Connected("prod", &channelpb.Hello{})
	mustReport(t, s, "prod", rep("web", 1, "synced", shaA, shaA))
	s.Connected("flaky", &channelpb.Hello{})
	mustReport(t, s, "flaky", rep("web", 1, "synced", shaA, shaA))
	d.down["flaky"] = true
	mustReport(t, s, "offline", rep("web", 1, "synced", shaA, shaA))

	post := func(path, token string) int {
		req, _ := http.NewRequest(http.MethodPost, url+path, nil)
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
	cases := []struct {
		path, token string
		want        int
	}{
		{"/api/v1/agents/prod/gitsyncs/apps/web/resync", "", http.StatusUnauthorized},
		{"/api/v1/agents/prod/gitsyncs/apps/web/resync", agentToken, http.StatusUnauthorized},
		{"/api/v1/agents/prod/gitsyncs/apps/nope/resync", apiToken, http.StatusNotFound},
		{"/api/v1/agents/offline/gitsyncs/apps/web/resync", apiToken, http.StatusConflict},
		{"/api/v1/agents/flaky/gitsyncs/apps/web/resync", apiToken, http.StatusServiceUnavailable},
		{"/api/v1/agents/prod/gitsyncs/apps/web/resync", apiToken, http.StatusAccepted},
	}
	for _, c := range cases {
		if got := post(c.path, c.token); got != c.want {
			t.Errorf("POST %s: %d, want %d", c.path, got, c.want)
		}
	}
	if got := d.calls(); fmt.Sprint(got) != "[prod apps/web  ]" {
		t.Errorf("SyncNow calls: %q", got)
	}
}

func TestPage(t *testing.T) {
	s, url, _ := newHub(t, Options{PageRefresh: 5 * time.Second})
	s.Connected("prod-eu", &channelpb.Hello{Version: "v9"})
	mustReport(t, s, "prod-eu", rep("storefront", 1, "synced", shaA, shaA))
	bad := rep("checkout", 1, "failed", shaA, shaB)
	bad.Message = `render failed: <script>alert(1)</script>`
	mustReport(t, s, "prod-eu", bad)
	resp, body := getAs(t, url+"/", apiToken(t, s))
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{"prod-eu", "apps/storefront", "aaaaaaa", "● connected",
		`src="badge/prod-eu/apps/storefront.svg"`, `http-equiv="refresh" content="5"`,
		"render failed: &lt;script&gt;alert(1)&lt;/script&gt;"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "http://") && !strings.Contains(body, "https://git.example.com") {
		t.Error("page carries script or an external asset")
	}
	if resp, _ := get(t, url+"/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %d", resp.StatusCode)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	s, url, _ := newHub(t, Options{})
	s.Connected("prod", &channelpb.Hello{})
	mustReport(t, s, "prod", rep("web", 2, "synced", shaA, shaA))
	if stored, _ := s.Report(context.Background(), "prod", rep("web", 1, "failed", "", "")); stored {
		t.Error("an older report was stored")
	}
	if resp, body := get(t, url+"/healthz"); resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	_, body := getAs(t, url+"/metrics", apiToken(t, s))
	for _, want := range []string{
		"tether_hub_connected_agents 1",
		`tether_hub_reports_received_total{result="stored"} 1`,
		`tether_hub_reports_received_total{result="stale"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestWebhookThroughHub(t *testing.T) {
	s, url, d := newHub(t, Options{WebhookSecret: []byte("hook")})
	s.Connected("prod", &channelpb.Hello{})
	mustReport(t, s, "prod", rep("web", 1, "synced", shaA, shaA))
	body := `{"object_kind":"push","ref":"refs/heads/main","after":"` + shaB + `",
		"project":{"git_http_url":"https://git.example.com/team/app.git","git_ssh_url":"git@git.example.com:team/app.git","web_url":"https://git.example.com/team/app"}}`
	req, _ := http.NewRequest(http.MethodPost, url+"/hooks/gitlab", strings.NewReader(body))
	req.Header.Set("X-Gitlab-Token", "hook")
	req.Header.Set("X-Gitlab-Event", "Push Hook")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook: %d", resp.StatusCode)
	}
	if got := d.calls(); fmt.Sprint(got) != "[prod / "+repo+" main]" {
		t.Errorf("SyncNow: %q", got)
	}
	_, m := getAs(t, url+"/metrics", apiToken(t, s))
	if !strings.Contains(m, `tether_hub_webhooks_total{provider="gitlab",result="dispatched"} 1`) {
		t.Error("webhook not counted")
	}
}

// TestCommitStatusesFromReports drives the poster through Report, against a
// GitLab-shaped server on loopback.
func TestCommitStatusesFromReports(t *testing.T) {
	var mu sync.Mutex
	var posts []string
	gl := listen(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		posts = append(posts, r.URL.EscapedPath()+" "+r.PostForm.Get("state")+" "+r.PostForm.Get("name")+" "+r.PostForm.Get("target_url"))
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":1}`)
	}))
	host, err := status.NewGitLab(gl, "tok")
	if err != nil {
		t.Fatal(err)
	}
	s, _, _ := newHub(t, Options{GitHosts: []status.Host{host}, ExternalURL: "https://hub.example.com/", StatusBackoff: time.Millisecond})
	src := strings.Replace(gl, "http://127.0.0.1", "https://127.0.0.1", 1) + "/team/app.git"
	report := func(v uint64, phase, rev, attempted string) {
		r := rep("web", v, phase, rev, attempted)
		r.SourceUrl = src
		mustReport(t, s, "prod", r)
	}
	// Each report's status is posted (its outbox row gone) before the
	// next is sent, so none replaces another in the outbox and the posts
	// are exactly those the states imply.
	step := func(v uint64, phase, rev, attempted string) {
		t.Helper()
		report(v, phase, rev, attempted)
		testenv.Eventually(t, 10*time.Second, func() error {
			qs, err := s.store.QueuedStatuses(context.Background())
			if err == nil && len(qs) > 0 {
				err = fmt.Errorf("report %d: commit status not posted: %+v", v, qs)
			}
			return err
		})
	}
	step(1, "progressing", "", shaA)
	step(2, "synced", shaA, shaA)
	step(3, "synced", shaA, shaA) // same state again: no post
	step(4, "drifted", shaA, shaA)
	step(5, "failed", shaA, shaB)
	mu.Lock()
	got := append([]string(nil), posts...)
	mu.Unlock()
	p := "/api/v4/projects/team%2Fapp/statuses/"
	want := []string{
		p + shaA + " running tether/prod/apps/web https://hub.example.com/#prod/apps/web",
		p + shaA + " success tether/prod/apps/web https://hub.example.com/#prod/apps/web",
		p + shaB + " failed tether/prod/apps/web https://hub.example.com/#prod/apps/web",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("posts:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var m dto.Metric
	if err := s.metrics.statusPosts.WithLabelValues("gitlab", "posted").Write(&m); err != nil || m.GetCounter().GetValue() != 3 {
		t.Errorf("posted statuses counted: %v, %v; want 3", m.GetCounter().GetValue(), err)
	}
}
