package e2e

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"tether.dev/tether/internal/testenv"
)

// statusServer is a loopback stand-in for GitHub's commit status API
// (POST /repos/{owner}/{repo}/statuses/{sha}, and GET
// /repos/{owner}/{repo}/commits/{sha}/statuses, newest first). It checks
// each request the way GitHub's documentation describes it, answers as
// GitHub does, and records what it accepted and which commits' statuses
// were asked for.
type statusServer struct {
	*httptest.Server
	token string

	mu       sync.Mutex
	statuses []postedStatus
	refused  []string
	gets     map[string]int // per sha
	// holds are POSTs to accept and not answer (see hold).
	holds   map[string]chan struct{}
	release chan struct{}
}

// postedStatus is one accepted status.
type postedStatus struct {
	Owner, Repo, SHA string
	State            string `json:"state"`
	Context          string `json:"context"`
	TargetURL        string `json:"target_url"`
	Description      string `json:"description"`
}

var (
	statusPath       = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/statuses/([0-9a-f]{40})$`)
	commitStatusPath = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/commits/([0-9a-f]{40})/statuses$`)
)

func newStatusServer(t *testing.T, token string) *statusServer {
	s := &statusServer{token: token, gets: map[string]int{}, holds: map[string]chan struct{}{}, release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(s.release) }) // first: Close waits for held requests
	return s
}

// hold makes the server accept the POST of state for sha and context
// (record it, as the host would apply it) but not answer it until its
// client goes away: the poster never learns the post worked. The channel
// is closed when that POST arrived.
func (s *statusServer) hold(sha, context, state string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan struct{})
	s.holds[sha+" "+context+" "+state] = c
	return c
}

// getCount is how many times the statuses of sha were asked for.
func (s *statusServer) getCount(sha string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets[sha]
}

// list answers GET /repos/{owner}/{repo}/commits/{sha}/statuses: the
// statuses accepted for the commit, newest first, as GitHub does.
func (s *statusServer) list(w http.ResponseWriter, owner, repo, sha string) {
	s.mu.Lock()
	s.gets[sha]++
	out := []map[string]any{}
	for i := len(s.statuses) - 1; i >= 0; i-- {
		st := s.statuses[i]
		if st.Owner == owner && st.Repo == repo && st.SHA == sha {
			out = append(out, map[string]any{"id": i + 1, "state": st.State, "context": st.Context,
				"description": st.Description, "target_url": st.TargetURL})
		}
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (s *statusServer) serve(w http.ResponseWriter, r *http.Request) {
	refuse := func(code int, why string) {
		s.mu.Lock()
		s.refused = append(s.refused, fmt.Sprintf("%s %s: %s", r.Method, r.URL.Path, why))
		s.mu.Unlock()
		http.Error(w, `{"message":"`+why+`"}`, code)
	}
	m := statusPath.FindStringSubmatch(r.URL.Path)
	g := commitStatusPath.FindStringSubmatch(r.URL.Path)
	switch {
	case r.Header.Get("Authorization") != "token "+s.token && r.Header.Get("Authorization") != "Bearer "+s.token:
		refuse(http.StatusUnauthorized, "Bad credentials")
		return
	case r.Method == http.MethodGet && g != nil:
		s.list(w, g[1], g[2], g[3])
		return
	case r.Method != http.MethodPost || m == nil:
		refuse(http.StatusNotFound, "Not Found")
		return
	}
	var st postedStatus
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &st); err != nil {
		refuse(http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	switch st.State {
	case "error", "failure", "pending", "success":
	default:
		refuse(http.StatusUnprocessableEntity, "Validation Failed: state "+st.State)
		return
	}
	if st.Context == "" {
		st.Context = "default" // GitHub's default
	}
	st.Owner, st.Repo, st.SHA = m[1], m[2], m[3]
	s.mu.Lock()
	s.statuses = append(s.statuses, st)
	n := len(s.statuses)
	held, isHeld := s.holds[st.SHA+" "+st.Context+" "+st.State]
	delete(s.holds, st.SHA+" "+st.Context+" "+st.State)
	s.mu.Unlock()
	if isHeld {
		close(held)
		select {
		case <-r.Context().Done(): // the poster died waiting
		case <-s.release:
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]any{
		"id": n, "state": st.State, "context": st.Context, "description": st.Description,
		"target_url": st.TargetURL, "created_at": time.Now().UTC().Format(time.RFC3339),
	})
}

// find returns the accepted statuses for sha and context.
func (s *statusServer) find(sha, context string) []postedStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []postedStatus
	for _, st := range s.statuses {
		if st.SHA == sha && st.Context == context {
			out = append(out, st)
		}
	}
	return out
}

// waitState waits until a status with state was accepted for sha and
// context, and returns it.
func (s *statusServer) waitState(t *testing.T, sha, context, state string) postedStatus {
	t.Helper()
	var got postedStatus
	eventually(t, 2*time.Minute, fmt.Sprintf("commit status %s for %s %s", state, short(sha), context), func() (bool, string) {
		all := s.find(sha, context)
		for _, st := range all {
			if st.State == state {
				got = st
				return true, ""
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return false, fmt.Sprintf("for this sha and context: %+v; refused: %q", all, s.refused)
	})
	return got
}

// duplicates lists each (sha, context, state) accepted more than once.
func (s *statusServer) duplicates() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := map[string]int{}
	for _, st := range s.statuses {
		n[short(st.SHA)+" "+st.Context+" "+st.State]++
	}
	var out []string
	for k, c := range n {
		if c > 1 {
			out = append(out, fmt.Sprintf("%s ×%d", k, c))
		}
	}
	return out
}

// TestGiteaStatusTakeOver checks against a real Gitea what a new leader
// does with the statuses a dead one had claimed: it reads the commit's
// statuses (GET /repos/{owner}/{repo}/commits/{sha}/statuses, where
// Gitea names the state "status") and posts only those Gitea lacks. The
// dead leader's claims are written into the hub's outbox as it would
// have left them.
func TestGiteaStatusTakeOver(t *testing.T) {
	dir := t.TempDir()
	g := startGitea(t, dir)
	g.api(t, http.MethodPost, "/api/v1/user/repos", map[string]any{"name": "app", "default_branch": "main", "private": false}, nil, false)
	local, err := testenv.InitRepo(filepath.Join(dir, "checkout"))
	if err != nil {
		t.Fatal(err)
	}
	sha := commit(t, local, "one")
	gitRun(t, local, "push", g.pushURL("app"), "main")
	statuses := "/api/v1/repos/" + g.user + "/app/statuses/" + sha
	// The dead leader posted this one, then died before recording it.
	g.api(t, http.MethodPost, statuses, map[string]any{"state": "success", "context": "tether/prod/apps/web"}, nil, false)

	writeFile(t, filepath.Join(dir, "gitea-token"), g.token+"\n")
	h := startHub(t, dir, hubOptions{flags: []string{
		"--github-api-url", g.url + "/api/v1", "--github-token-file", filepath.Join(dir, "gitea-token"),
	}})
	db, err := sql.Open("sqlite", "file:"+h.db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	repoURL := g.url + "/" + g.user + "/app.git"
	for _, row := range [][2]string{{"tether/prod/apps/web", "success"}, {"tether/prod/apps/api", "failed"}} {
		// Claimed long ago by a hub that is gone.
		if _, err := db.Exec(`INSERT INTO status_outbox(sha, context, state, repo_url, queued, claimed_by, claimed)
			VALUES (?, ?, ?, ?, ?, 'dead-hub', 1)`, sha, row[0], row[1], repoURL, time.Now().UnixMilli()); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 2*time.Minute, "the hub to finish the dead leader's statuses", func() (bool, string) {
		var rows, recorded int
		db.QueryRow(`SELECT count(*) FROM status_outbox`).Scan(&rows)
		db.QueryRow(`SELECT count(*) FROM commit_statuses WHERE sha = ?`, sha).Scan(&recorded)
		return rows == 0 && recorded == 2, fmt.Sprintf("outbox %d rows, %d recorded", rows, recorded)
	})
	var list []struct {
		ID      int64  `json:"id"`
		Status  string `json:"status"`
		Context string `json:"context"`
	}
	g.api(t, http.MethodGet, "/api/v1/repos/"+g.user+"/app/commits/"+sha+"/statuses", nil, &list, false)
	n := map[string]int{}
	for _, s := range list {
		n[s.Context+" "+s.Status]++
	}
	if want := map[string]int{"tether/prod/apps/web success": 1, "tether/prod/apps/api failure": 1}; fmt.Sprint(n) != fmt.Sprint(want) {
		t.Errorf("Gitea holds %v, want each status once: %v", n, want)
	}
	if !strings.Contains(h.log(), "commit status already on the Git host") {
		t.Error("the hub did not say it found the status on Gitea")
	}
}
