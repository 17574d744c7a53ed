package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"tether.dev/tether/hub/store"
	"tether.dev/tether/internal/testenv"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

func loopback(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func newStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// recorded is what a fake Git host received.
type recorded struct {
	mu    sync.Mutex
	posts []map[string]string
	fail  int // answer 500 to this many requests first
}

func (r *recorded) add(m map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.posts = append(r.posts, m)
}

func (r *recorded) failNext() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return true
	}
	return false
}

func (r *recorded) list() []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]string(nil), r.posts...)
}

// fakeGitLab checks each request as GitLab's API documents
// POST /projects/:id/statuses/:sha: the project id is the URL-encoded full
// path, the token is in PRIVATE-TOKEN, the fields are state, name,
// target_url and description. It answers 201 with the status as JSON.
func fakeGitLab(t *testing.T, rec *recorded) *httptest.Server {
	return loopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := "/gitlab/api/v4/projects/group%2Fsub%2Fapp/statuses/" + sha
		if r.Method != http.MethodPost || r.URL.EscapedPath() != want {
			t.Errorf("GitLab request %s %s, want POST %s", r.Method, r.URL.EscapedPath(), want)
			http.Error(w, `{"message":"404 Not Found"}`, http.StatusNotFound)
			return
		}
		if r.Header.Get("PRIVATE-TOKEN") != "glpat-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"message":"401 Unauthorized"}`)
			return
		}
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		f := map[string]string{}
		for _, k := range []string{"state", "name", "target_url", "description"} {
			f[k] = r.PostForm.Get(k)
		}
		switch f["state"] {
		case "pending", "running", "success", "failed", "canceled":
		default:
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"message":"state is invalid"}`)
			return
		}
		if rec.failNext() {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"message":"500 Internal Server Error"}`)
			return
		}
		rec.add(f)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{
			"id": len(rec.list()), "sha": sha, "ref": "main", "status": f["state"], "name": f["name"],
			"target_url": f["target_url"], "description": f["description"], "created_at": time.Now().Format(time.RFC3339),
			"started_at": nil, "finished_at": nil, "allow_failure": false, "coverage": nil,
			"author": map[string]any{"id": 1, "username": "tether-bot"},
		})
	}))
}

// fakeGitHub checks POST /repos/{owner}/{repo}/statuses/{sha} as GitHub's
// and Gitea's API document it.
func fakeGitHub(t *testing.T, prefix string, rec *recorded) *httptest.Server {
	return loopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := prefix + "/repos/alice/app/statuses/" + sha
		if r.Method != http.MethodPost || r.URL.EscapedPath() != want {
			t.Errorf("GitHub request %s %s, want POST %s", r.Method, r.URL.EscapedPath(), want)
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if r.Header.Get("Authorization") != "token ghp-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
		}
		var body map[string]string
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		switch body["state"] {
		case "pending", "success", "failure", "error":
		default:
			w.WriteHeader(http.StatusUnprocessableEntity)
			return
		}
		if rec.failNext() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		rec.add(body)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"id": 1, "state": body["state"], "context": body["context"]})
	}))
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if !cond() {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		return nil
	})
}

func TestGitLabStatuses(t *testing.T) {
	rec := &recorded{fail: 1}
	gl := fakeGitLab(t, rec)
	h, err := NewGitLab(gl.URL+"/gitlab", "glpat-secret")
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan string, 16)
	p := NewPoster([]Host{h}, newStore(t), Options{Backoff: 5 * time.Millisecond,
		Result: func(_ Host, r string) { results <- r }})
	defer p.Close()
	u, _ := url.Parse(gl.URL)
	repo := "https://" + u.Hostname() + "/gitlab/group/sub/app.git"
	st := Status{RepoURL: repo, SHA: sha, State: Running, Context: "tether/prod/apps/web",
		TargetURL: "https://hub.example.com/#prod/apps/web", Description: "applying main@sha1:" + sha}
	if !p.Enqueue(st) {
		t.Fatal("the GitLab host does not serve " + repo)
	}
	if got := <-results; got != "posted" { // after one 500 and a retry
		t.Fatalf("result %q", got)
	}
	p.Enqueue(st) // unchanged state: no second post
	if got := <-results; got != "unchanged" {
		t.Fatalf("result %q", got)
	}
	st.State = Success
	p.Enqueue(st)
	if got := <-results; got != "posted" {
		t.Fatalf("result %q", got)
	}
	posts := rec.list()
	if len(posts) != 2 {
		t.Fatalf("posts: %v", posts)
	}
	want := map[string]string{"state": "running", "name": "tether/prod/apps/web",
		"target_url": "https://hub.example.com/#prod/apps/web", "description": "applying main@sha1:" + sha}
	if fmt.Sprint(posts[0]) != fmt.Sprint(want) {
		t.Errorf("first post %v, want %v", posts[0], want)
	}
	if posts[1]["state"] != "success" {
		t.Errorf("second post %v", posts[1])
	}
	if p.Enqueue(Status{RepoURL: "https://elsewhere.example.com/a/b", SHA: sha}) {
		t.Error("a repository on an unconfigured host is accepted")
	}
}

func TestGitHubAndGiteaStatuses(t *testing.T) {
	for _, prefix := range []string{"", "/api/v1"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			rec := &recorded{fail: 1}
			gh := fakeGitHub(t, prefix, rec)
			h, err := NewGitHub(gh.URL+prefix, "ghp-secret")
			if err != nil {
				t.Fatal(err)
			}
			results := make(chan string, 16)
			p := NewPoster([]Host{h}, newStore(t), Options{Backoff: 5 * time.Millisecond,
				Result: func(_ Host, r string) { results <- r }})
			defer p.Close()
			u, _ := url.Parse(gh.URL)
			repo := "http://" + u.Host + "/alice/app.git"
			for _, s := range []State{Running, Running, Failed} {
				p.Enqueue(Status{RepoURL: repo, SHA: sha, State: s, Context: "tether/prod/apps/web"})
				<-results
			}
			posts := rec.list()
			if len(posts) != 2 || posts[0]["state"] != "pending" || posts[1]["state"] != "failure" ||
				posts[0]["context"] != "tether/prod/apps/web" {
				t.Errorf("posts: %v", posts)
			}
			if _, ok := posts[0]["target_url"]; ok {
				t.Error("an empty target_url was sent")
			}
		})
	}
}

func TestGivesUpOnClientErrors(t *testing.T) {
	rec := &recorded{}
	gl := fakeGitLab(t, rec)
	h, _ := NewGitLab(gl.URL+"/gitlab", "wrong-token")
	results := make(chan string, 4)
	p := NewPoster([]Host{h}, newStore(t), Options{Backoff: time.Hour,
		Result: func(_ Host, r string) { results <- r }})
	defer p.Close()
	u, _ := url.Parse(gl.URL)
	p.Enqueue(Status{RepoURL: "https://" + u.Hostname() + "/gitlab/group/sub/app", SHA: sha, State: Running, Context: "c"})
	select {
	case r := <-results:
		if r != "failed" {
			t.Errorf("result %q, want failed at once (401 is not retried)", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a 401 was retried")
	}
}

func TestHostProject(t *testing.T) {
	gl, _ := NewGitLab("https://GitLab.example.com/", "t")
	gh, _ := NewGitHub("https://api.github.com", "t")
	cases := []struct {
		h     Host
		repo  string
		want  string
		serve bool
	}{
		{gl, "git@gitlab.example.com:group/sub/app.git", "group/sub/app", true},
		{gl, "https://gitlab.example.com/group/app/", "group/app", true},
		{gl, "https://github.com/group/app", "", false},
		{gh, "https://github.com/alice/app.git", "alice/app", true},
		{gh, "https://github.com/alice/app/extra", "", false},
	}
	for _, c := range cases {
		got, ok := c.h.project(c.repo)
		if ok != c.serve || got != c.want {
			t.Errorf("%s project(%q) = %q, %v", c.h, c.repo, got, ok)
		}
	}
	if _, err := NewGitLab("ftp://x", "t"); err == nil {
		t.Error("a non-HTTP GitLab URL is accepted")
	}
}
