package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"
)

// statusServer is a loopback stand-in for GitHub's commit status API
// (POST /repos/{owner}/{repo}/statuses/{sha}). It checks each request the
// way GitHub's documentation describes it, answers 201 as GitHub does, and
// records what it accepted.
type statusServer struct {
	*httptest.Server
	token string

	mu       sync.Mutex
	statuses []postedStatus
	refused  []string
}

// postedStatus is one accepted status.
type postedStatus struct {
	Owner, Repo, SHA string
	State            string `json:"state"`
	Context          string `json:"context"`
	TargetURL        string `json:"target_url"`
	Description      string `json:"description"`
}

var statusPath = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/statuses/([0-9a-f]{40})$`)

func newStatusServer(t *testing.T, token string) *statusServer {
	s := &statusServer{token: token}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *statusServer) serve(w http.ResponseWriter, r *http.Request) {
	refuse := func(code int, why string) {
		s.mu.Lock()
		s.refused = append(s.refused, fmt.Sprintf("%s %s: %s", r.Method, r.URL.Path, why))
		s.mu.Unlock()
		http.Error(w, `{"message":"`+why+`"}`, code)
	}
	m := statusPath.FindStringSubmatch(r.URL.Path)
	switch {
	case r.Method != http.MethodPost || m == nil:
		refuse(http.StatusNotFound, "Not Found")
		return
	case r.Header.Get("Authorization") != "token "+s.token && r.Header.Get("Authorization") != "Bearer "+s.token:
		refuse(http.StatusUnauthorized, "Bad credentials")
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
	s.mu.Unlock()
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
