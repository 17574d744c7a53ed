package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/store"
)

const secret = "s3cret-webhook"

// dispatcher records SyncNow calls; agents not in connected fail.
type dispatcher struct {
	mu        sync.Mutex
	connected map[string]bool
	got       []string
}

func (d *dispatcher) SyncNow(agent string, m *channelpb.SyncNow) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.connected[agent] {
		return errors.New("agent not connected")
	}
	d.got = append(d.got, fmt.Sprintf("%s %s %s", agent, m.GetRepoUrl(), m.GetBranchOrTag()))
	return nil
}

func (d *dispatcher) calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := append([]string(nil), d.got...)
	sort.Strings(out)
	return out
}

// setup starts a receiver on loopback over a real store holding GitSyncs.
func setup(t *testing.T, gitsyncs map[string][2]string) (*httptest.Server, *dispatcher) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for id, src := range gitsyncs { // id is agent/name
		agent, name, _ := strings.Cut(id, "/")
		_, err := st.Ingest(context.Background(), agent, &channelpb.SyncReport{
			Namespace: "apps", Name: name, StateVersion: 1, SourceUrl: src[0], Ref: src[1], Phase: "synced"})
		if err != nil {
			t.Fatal(err)
		}
	}
	d := &dispatcher{connected: map[string]bool{"prod": true, "staging": true}}
	rc := &Receiver{Secret: []byte(secret), Finder: st, Dispatch: d}
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/gitlab", rc.GitLab())
	mux.Handle("POST /hooks/github", rc.GitHub())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: mux}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, d
}

func send(t *testing.T, u string, body []byte, headers map[string]string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func sign(body []byte, key string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGitLabPush(t *testing.T) {
	srv, d := setup(t, map[string][2]string{
		"prod/web":      {"https://EXAMPLE.com/mike/diaspora/", "branch:master"},
		"staging/web":   {"git@example.com:mike/diaspora.git", "branch:master"},
		"staging/other": {"http://example.com/mike/diaspora.git", "branch:develop"}, // another branch
		"offline/web":   {"http://example.com/mike/diaspora.git", "branch:master"},  // not connected
		"prod/api":      {"http://example.com/mike/api.git", "branch:master"},       // another repo
	})
	body := fixture(t, "gitlab-push.json")
	hook := srv.URL + "/hooks/gitlab"
	if code := send(t, hook, body, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret + "x"}); code != http.StatusUnauthorized {
		t.Errorf("almost-right token: %d, want 401", code)
	}
	if code := send(t, hook, body, map[string]string{"X-Gitlab-Event": "Push Hook"}); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	if len(d.calls()) != 0 {
		t.Fatalf("dispatched on a bad secret: %v", d.calls())
	}
	if code := send(t, hook, body, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}); code != http.StatusAccepted {
		t.Fatalf("good push: %d, want 202", code)
	}
	want := []string{
		"prod https://EXAMPLE.com/mike/diaspora/ master",
		"staging git@example.com:mike/diaspora.git master",
	}
	if got := d.calls(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("SyncNow calls:\n%q\nwant\n%q", got, want)
	}
	if code := send(t, hook, []byte("{not json"), map[string]string{"X-Gitlab-Token": secret}); code != http.StatusBadRequest {
		t.Errorf("malformed body: %d, want 400", code)
	}
}

func TestGitLabUnknownRepo(t *testing.T) {
	srv, d := setup(t, map[string][2]string{"prod/web": {"https://example.com/other/repo", "branch:master"}})
	code := send(t, srv.URL+"/hooks/gitlab", fixture(t, "gitlab-push.json"), map[string]string{"X-Gitlab-Token": secret})
	if code != http.StatusAccepted || len(d.calls()) != 0 {
		t.Errorf("unknown repo: %d, calls %v; want 202 and nothing", code, d.calls())
	}
}

func TestGiteaPush(t *testing.T) {
	srv, d := setup(t, map[string][2]string{
		"prod/web":    {"http://127.0.0.1:3000/alice/app", "branch:main"},
		"staging/web": {"http://127.0.0.1:3000/alice/app.git", "tag:v1"},
	})
	body := fixture(t, "gitea-push.json")
	hook := srv.URL + "/hooks/github"
	if code := send(t, hook, body, map[string]string{"X-Gitea-Event": "push", "X-Hub-Signature-256": "sha256=" + sign(body, "wrong")}); code != http.StatusUnauthorized {
		t.Errorf("bad signature: %d, want 401", code)
	}
	if code := send(t, hook, body, map[string]string{"X-Gitea-Event": "push"}); code != http.StatusUnauthorized {
		t.Errorf("no signature: %d, want 401", code)
	}
	headers := map[string]string{"X-Gitea-Event": "push", "X-GitHub-Event": "push",
		"X-Gitea-Signature": sign(body, secret), "X-Hub-Signature-256": "sha256=" + sign(body, secret)}
	if code := send(t, hook, body, headers); code != http.StatusAccepted {
		t.Fatalf("good push: %d, want 202", code)
	}
	if got := d.calls(); fmt.Sprint(got) != fmt.Sprint([]string{"prod http://127.0.0.1:3000/alice/app main"}) {
		t.Errorf("SyncNow calls: %q", got)
	}
}

func TestGitHubTagPushFormEncoded(t *testing.T) {
	srv, d := setup(t, map[string][2]string{
		"prod/web":    {"https://github.com/codertocat/hello-world", "semver:>=1.2.0 <2"},
		"staging/web": {"git@github.com:Codertocat/Hello-World.git", "branch:main"},
	})
	body := []byte(url.Values{"payload": {string(fixture(t, "github-push.json"))}}.Encode())
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/hooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+sign(body, secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := d.calls(); fmt.Sprint(got) != fmt.Sprint([]string{"prod https://github.com/codertocat/hello-world v1.4.0"}) {
		t.Errorf("SyncNow calls: %q", got)
	}
	ping := []byte(`{"zen":"Keep it logically awesome."}`)
	if code := send(t, srv.URL+"/hooks/github", ping, map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + sign(ping, secret)}); code != http.StatusAccepted {
		t.Errorf("ping: %d", code)
	}
}

func TestNoSecretRefusesAll(t *testing.T) {
	rc := &Receiver{}
	rec := httptest.NewRecorder()
	rc.GitLab().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/hooks/gitlab", strings.NewReader("{}")))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("no secret: %d", rec.Code)
	}
}

func TestFollows(t *testing.T) {
	cases := []struct {
		gitsync, pushed, def string
		want                 bool
	}{
		{"branch:main", "refs/heads/main", "", true},
		{"branch:main", "refs/heads/mainline", "", false},
		{"branch:main", "refs/tags/main", "", false},
		{"main", "refs/heads/main", "", true},
		{"tag:v1", "refs/tags/v1", "", true},
		{"tag:v1", "refs/tags/v1.1", "", false},
		{"semver:~1.2", "refs/tags/v1.2.7", "", true},
		{"semver:~1.2", "refs/tags/v1.3.0", "", false},
		{"semver:~1.2", "refs/heads/v1.2.7", "", false},
		{"commit:abc", "refs/heads/main", "", false},
		{"", "refs/heads/main", "main", true},
		{"", "refs/heads/dev", "main", false},
	}
	for _, c := range cases {
		if got := Follows(c.gitsync, c.pushed, c.def); got != c.want {
			t.Errorf("Follows(%q, %q, %q) = %v", c.gitsync, c.pushed, c.def, got)
		}
	}
}
