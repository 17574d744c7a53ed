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
	gets  int
	fail  int // answer 500 to this many posts first
}

func (r *recorded) add(m map[string]string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.posts = append(r.posts, m)
	return len(r.posts)
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

func (r *recorded) getCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gets
}

// statuses answers a GET of the commit's statuses: the accepted posts,
// newest first, each with its id, its context under ctxKey and its state
// under stateKey, filtered by context name when name is set.
func (r *recorded) statuses(w http.ResponseWriter, ctxKey, stateKey, name string) {
	r.mu.Lock()
	r.gets++
	var out []map[string]any
	for i := len(r.posts) - 1; i >= 0; i-- {
		p := r.posts[i]
		if name != "" && p[ctxKey] != name {
			continue
		}
		out = append(out, map[string]any{"id": i + 1, ctxKey: p[ctxKey], stateKey: p["state"], "sha": sha})
	}
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// fakeGitLab checks each request as GitLab's API documents
// POST /projects/:id/statuses/:sha: the project id is the URL-encoded full
// path, the token is in PRIVATE-TOKEN, the fields are state, name,
// target_url and description. It answers 201 with the status as JSON. It
// lists a commit's statuses at GET
// /projects/:id/repository/commits/:sha/statuses?name=….
func fakeGitLab(t *testing.T, rec *recorded) *httptest.Server {
	return loopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("PRIVATE-TOKEN") != "glpat-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"message":"401 Unauthorized"}`)
			return
		}
		list := "/gitlab/api/v4/projects/group%2Fsub%2Fapp/repository/commits/" + sha + "/statuses"
		if r.Method == http.MethodGet && r.URL.EscapedPath() == list {
			rec.statuses(w, "name", "status", r.URL.Query().Get("name"))
			return
		}
		want := "/gitlab/api/v4/projects/group%2Fsub%2Fapp/statuses/" + sha
		if r.Method != http.MethodPost || r.URL.EscapedPath() != want {
			t.Errorf("GitLab request %s %s, want POST %s", r.Method, r.URL.EscapedPath(), want)
			http.Error(w, `{"message":"404 Not Found"}`, http.StatusNotFound)
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
		id := rec.add(f)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{
			"id": id, "sha": sha, "ref": "main", "status": f["state"], "name": f["name"],
			"target_url": f["target_url"], "description": f["description"], "created_at": time.Now().Format(time.RFC3339),
			"started_at": nil, "finished_at": nil, "allow_failure": false, "coverage": nil,
			"author": map[string]any{"id": 1, "username": "tether-bot"},
		})
	}))
}

// fakeGitHub checks POST /repos/{owner}/{repo}/statuses/{sha} as GitHub's
// and Gitea's API document it, and lists a commit's statuses at GET
// /repos/{owner}/{repo}/commits/{sha}/statuses (GitHub names the state
// "state", Gitea "status": stateKey).
func fakeGitHub(t *testing.T, prefix, stateKey string, rec *recorded) *httptest.Server {
	return loopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "token ghp-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodGet && r.URL.EscapedPath() == prefix+"/repos/alice/app/commits/"+sha+"/statuses" {
			rec.statuses(w, "context", stateKey, "")
			return
		}
		want := prefix + "/repos/alice/app/statuses/" + sha
		if r.Method != http.MethodPost || r.URL.EscapedPath() != want {
			t.Errorf("GitHub request %s %s, want POST %s", r.Method, r.URL.EscapedPath(), want)
			w.WriteHeader(http.StatusNotFound)
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
		id := rec.add(body)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"id": id, "state": body["state"], "context": body["context"]})
	}))
}

// outbox runs a Poster on a store of its own; results gets each outcome.
type outbox struct {
	*store.Store
	p       *Poster
	results chan string
}

func newOutbox(t *testing.T, h Host, o Options) *outbox {
	t.Helper()
	b := &outbox{Store: newStore(t), results: make(chan string, 64)}
	o.Holder = "hub-test"
	o.Result = func(_ Host, r string) { b.results <- r }
	if o.Backoff == 0 {
		o.Backoff = 5 * time.Millisecond
	}
	b.p = NewPoster([]Host{h}, b.Store, o)
	t.Cleanup(b.p.Close)
	return b
}

// queue puts s in the outbox and wakes the poster.
func (b *outbox) queue(t *testing.T, s Status) bool {
	t.Helper()
	if !b.p.Serves(s.RepoURL) {
		t.Fatalf("the host does not serve %s", s.RepoURL)
	}
	ok, err := b.QueueStatus(context.Background(), store.QueuedStatus{SHA: s.SHA, Context: s.Context, State: string(s.State),
		RepoURL: s.RepoURL, TargetURL: s.TargetURL, Description: s.Description})
	if err != nil {
		t.Fatal(err)
	}
	b.p.Wake()
	return ok
}

// next is the next outcome.
func (b *outbox) next(t *testing.T) string {
	t.Helper()
	select {
	case r := <-b.results:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no commit status handled")
		return ""
	}
}

// empty waits until the outbox has no row.
func (b *outbox) empty(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		qs, err := b.QueuedStatuses(context.Background())
		if err != nil || len(qs) > 0 {
			return fmt.Errorf("outbox: %+v, %v", qs, err)
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
	b := newOutbox(t, h, Options{})
	u, _ := url.Parse(gl.URL)
	repo := "https://" + u.Hostname() + "/gitlab/group/sub/app.git"
	st := Status{RepoURL: repo, SHA: sha, State: Running, Context: "tether/prod/apps/web",
		TargetURL: "https://hub.example.com/#prod/apps/web", Description: "applying main@sha1:" + sha}
	b.queue(t, st)
	for _, want := range []string{"retried", "posted"} { // one 500, then the retry
		if got := b.next(t); got != want {
			t.Fatalf("result %q, want %q", got, want)
		}
	}
	b.empty(t)
	if b.queue(t, st) { // unchanged state: nothing to post
		t.Fatal("a state already posted was queued again")
	}
	st.State = Success
	b.queue(t, st)
	if got := b.next(t); got != "posted" {
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
	if rec.getCount() != 1 {
		t.Errorf("%d GETs of the commit's statuses, want 1 (before the retry only)", rec.getCount())
	}
	if b.p.Serves("https://elsewhere.example.com/a/b") {
		t.Error("a repository on an unconfigured host is served")
	}
}

func TestGitHubAndGiteaStatuses(t *testing.T) {
	for _, c := range []struct{ prefix, stateKey string }{{"", "state"}, {"/api/v1", "status"}} {
		t.Run("prefix="+c.prefix, func(t *testing.T) {
			rec := &recorded{fail: 1}
			gh := fakeGitHub(t, c.prefix, c.stateKey, rec)
			h, err := NewGitHub(gh.URL+c.prefix, "ghp-secret")
			if err != nil {
				t.Fatal(err)
			}
			b := newOutbox(t, h, Options{})
			u, _ := url.Parse(gh.URL)
			repo := "http://" + u.Host + "/alice/app.git"
			b.queue(t, Status{RepoURL: repo, SHA: sha, State: Running, Context: "tether/prod/apps/web"})
			for _, want := range []string{"retried", "posted"} {
				if got := b.next(t); got != want {
					t.Fatalf("result %q, want %q", got, want)
				}
			}
			b.empty(t)
			b.queue(t, Status{RepoURL: repo, SHA: sha, State: Running, Context: "tether/prod/apps/web"})
			b.queue(t, Status{RepoURL: repo, SHA: sha, State: Failed, Context: "tether/prod/apps/web"})
			if got := b.next(t); got != "posted" {
				t.Fatalf("result %q", got)
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

// A 4xx is not retried: the status is dropped, nothing recorded as
// posted.
func TestGivesUpOnClientErrors(t *testing.T) {
	rec := &recorded{}
	gl := fakeGitLab(t, rec)
	h, _ := NewGitLab(gl.URL+"/gitlab", "wrong-token")
	b := newOutbox(t, h, Options{Backoff: time.Hour})
	u, _ := url.Parse(gl.URL)
	b.queue(t, Status{RepoURL: "https://" + u.Hostname() + "/gitlab/group/sub/app", SHA: sha, State: Running, Context: "c"})
	if r := b.next(t); r != "failed" {
		t.Errorf("result %q, want failed at once (401 is not retried)", r)
	}
	b.empty(t)
	if st, _ := b.PostedStatus(context.Background(), sha, "c"); st != "" {
		t.Errorf("a refused status recorded as posted: %q", st)
	}
}

// Out of attempts, a status is dropped.
func TestGivesUpAfterAttempts(t *testing.T) {
	rec := &recorded{fail: 100}
	gh := fakeGitHub(t, "", "state", rec)
	h, _ := NewGitHub(gh.URL, "ghp-secret")
	b := newOutbox(t, h, Options{Attempts: 3, Backoff: time.Millisecond})
	u, _ := url.Parse(gh.URL)
	b.queue(t, Status{RepoURL: "http://" + u.Host + "/alice/app", SHA: sha, State: Running, Context: "c"})
	for _, want := range []string{"retried", "retried", "failed"} {
		if got := b.next(t); got != want {
			t.Fatalf("result %q, want %q", got, want)
		}
	}
	b.empty(t)
}

// A hub that does not lead posts nothing; once it leads, it posts what
// waited.
func TestPostsOnlyWhileLeading(t *testing.T) {
	rec := &recorded{}
	gh := fakeGitHub(t, "", "state", rec)
	h, _ := NewGitHub(gh.URL, "ghp-secret")
	var mu sync.Mutex
	leading := false
	b := newOutbox(t, h, Options{Poll: 10 * time.Millisecond, Leading: func() bool {
		mu.Lock()
		defer mu.Unlock()
		return leading
	}})
	u, _ := url.Parse(gh.URL)
	b.queue(t, Status{RepoURL: "http://" + u.Host + "/alice/app", SHA: sha, State: Running, Context: "c"})
	// The poster polls; while it does not lead, every poll leaves the row.
	testenv.Eventually(t, 10*time.Second, func() error {
		qs, err := b.ClaimStatuses(context.Background(), "probe", time.Hour, 10)
		if err != nil || len(qs) != 1 {
			return fmt.Errorf("the row is not there unclaimed: %+v, %v", qs, err)
		}
		return b.RetryStatus(context.Background(), "probe", qs[0], time.Time{}, false)
	})
	if len(rec.list()) != 0 {
		t.Fatal("a hub that does not lead posted")
	}
	mu.Lock()
	leading = true
	mu.Unlock()
	b.p.Wake()
	if got := b.next(t); got != "posted" {
		t.Fatalf("result %q", got)
	}
}

// takeover is the store as a leader sees it after its predecessor died:
// every claim older than now is stale (the real one waits out a post's
// timeout).
type takeover struct{ *store.Store }

func (s takeover) ClaimStatuses(ctx context.Context, holder string, _ time.Duration, limit int) ([]store.QueuedStatus, error) {
	return s.Store.ClaimStatuses(ctx, holder, 0, limit)
}

// The crash window: a leader posted a status and died before recording
// it. The next leader, taking the row it had claimed, asks the host
// first: the state is there, so it is recorded and not posted again. A
// row the dead leader claimed and had not posted is posted.
func TestTakeOverClaimedStatus(t *testing.T) {
	for _, kind := range []Kind{GitHub, GitLab} {
		t.Run(string(kind), func(t *testing.T) {
			rec := &recorded{}
			var h Host
			var repo string
			if kind == GitLab {
				srv := fakeGitLab(t, rec)
				h, _ = NewGitLab(srv.URL+"/gitlab", "glpat-secret")
				u, _ := url.Parse(srv.URL)
				repo = "https://" + u.Hostname() + "/gitlab/group/sub/app.git"
			} else {
				srv := fakeGitHub(t, "", "state", rec)
				h, _ = NewGitHub(srv.URL, "ghp-secret")
				u, _ := url.Parse(srv.URL)
				repo = "http://" + u.Host + "/alice/app.git"
			}
			ctx := context.Background()
			st := newStore(t)
			posted := Status{RepoURL: repo, SHA: sha, State: Success, Context: "tether/prod/apps/web"}
			lost := Status{RepoURL: repo, SHA: sha, State: Failed, Context: "tether/prod/apps/api"}
			for _, s := range []Status{posted, lost} {
				if _, err := st.QueueStatus(ctx, store.QueuedStatus{SHA: s.SHA, Context: s.Context, State: string(s.State), RepoURL: repo}); err != nil {
					t.Fatal(err)
				}
			}
			// The dead leader claimed both, and posted one (the host has
			// it: an earlier running state of it too, older).
			if qs, err := st.ClaimStatuses(ctx, "dead-hub", time.Hour, 10); err != nil || len(qs) != 2 {
				t.Fatalf("the dead leader's claim: %+v, %v", qs, err)
			}
			early := posted
			early.State = Running
			for _, s := range []Status{early, posted} {
				if err := post(ctx, http.DefaultClient, h, mustProject(t, h, repo), s); err != nil {
					t.Fatal(err)
				}
			}
			results := make(chan string, 8)
			p := NewPoster([]Host{h}, takeover{st}, Options{Holder: "hub-next", Backoff: time.Millisecond, Poll: 10 * time.Millisecond,
				Result: func(_ Host, r string) { results <- r }})
			defer p.Close()
			got := map[string]int{}
			for range 2 {
				select {
				case r := <-results:
					got[r]++
				case <-time.After(30 * time.Second):
					t.Fatalf("results so far %v", got)
				}
			}
			if got["unchanged"] != 1 || got["posted"] != 1 {
				t.Errorf("results %v, want one unchanged (on the host already) and one posted", got)
			}
			n := map[string]int{}
			for _, p := range rec.list() {
				n[p["state"]+" "+p["context"]+p["name"]]++
			}
			want := map[string]int{}
			for _, s := range []Status{early, posted, lost} {
				state := githubState(s.State)
				if kind == GitLab {
					state = gitlabState(s.State)
				}
				want[state+" "+s.Context] = 1
			}
			if fmt.Sprint(n) != fmt.Sprint(want) {
				t.Errorf("posts %v, want each once: %v", n, want)
			}
			if rec.getCount() < 2 {
				t.Errorf("%d GETs of the commit's statuses, want one per row taken over", rec.getCount())
			}
			for _, s := range []Status{posted, lost} {
				if got, _ := st.PostedStatus(ctx, s.SHA, s.Context); got != string(s.State) {
					t.Errorf("%s recorded as %q, want %s", s.Context, got, s.State)
				}
			}
		})
	}
}

func mustProject(t *testing.T, h Host, repo string) string {
	t.Helper()
	p, ok := h.project(repo)
	if !ok {
		t.Fatalf("%s does not serve %s", h, repo)
	}
	return p
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
