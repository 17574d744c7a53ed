package status

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// State is a commit status in the hub's words; each dialect has its own.
type State string

// The states the hub posts.
const (
	Running State = "running"
	Success State = "success"
	Failed  State = "failed"
)

// Status is one commit status to post.
type Status struct {
	RepoURL string
	SHA     string
	State   State
	// Context names the status so several clusters don't overwrite each
	// other: "tether/<agent>/<namespace>/<name>".
	Context     string
	TargetURL   string
	Description string
}

// errPermanent marks a failure a retry cannot fix (a 4xx answer).
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

// post sends s to h once.
func post(ctx context.Context, client *http.Client, h Host, project string, s Status) error {
	var req *http.Request
	var err error
	desc := s.Description
	if r := []rune(desc); len(r) > 140 {
		desc = string(r[:139]) + "…"
	}
	switch h.Kind {
	case GitLab:
		form := url.Values{}
		form.Set("state", gitlabState(s.State))
		form.Set("name", s.Context)
		if s.TargetURL != "" {
			form.Set("target_url", s.TargetURL)
		}
		if desc != "" {
			form.Set("description", desc)
		}
		// The project id is its full path, URL-encoded: group%2Fproject.
		u := h.API + "/projects/" + url.PathEscape(project) + "/statuses/" + url.PathEscape(s.SHA)
		req, err = h.request(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
		if err != nil {
			return errPermanent{err}
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	case GitHub:
		owner, repo, _ := strings.Cut(project, "/")
		body := map[string]string{"state": githubState(s.State), "context": s.Context}
		if s.TargetURL != "" {
			body["target_url"] = s.TargetURL
		}
		if desc != "" {
			body["description"] = desc
		}
		b, _ := json.Marshal(body)
		u := h.API + "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(repo) + "/statuses/" + url.PathEscape(s.SHA)
		req, err = h.request(ctx, http.MethodPost, u, bytes.NewReader(b))
		if err != nil {
			return errPermanent{err}
		}
		req.Header.Set("Content-Type", "application/json")
	default:
		return errPermanent{fmt.Errorf("unknown git host kind %q", h.Kind)}
	}
	resp, err := do(client, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case h.Kind == GitLab && resp.StatusCode == http.StatusBadRequest && bytes.Contains(msg, []byte("Cannot transition status")):
		// GitLab refuses to set the state a status already has: that is
		// the outcome we wanted.
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("%s answered %s: %s", h.Kind, resp.Status, bytes.TrimSpace(msg))
	default:
		return errPermanent{fmt.Errorf("%s answered %s: %s", h.Kind, resp.Status, bytes.TrimSpace(msg))}
	}
}

// request is a request to h's API with its token (in the header each
// dialect wants: never in the URL, so never in a logged error).
func (h Host) request(ctx context.Context, method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	switch h.Kind {
	case GitLab:
		req.Header.Set("PRIVATE-TOKEN", h.Token)
	default:
		req.Header.Set("Accept", "application/vnd.github+json")
		req.Header.Set("Authorization", "token "+h.Token)
	}
	req.Header.Set("User-Agent", "tether-hub")
	return req, nil
}

// do sends req; a transport error keeps its cause, not the URL (the
// caller logs the host and project).
func do(client *http.Client, req *http.Request) (*http.Response, error) {
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	return resp, nil
}

// hasState asks h whether the commit's status context shows state now:
// the newest status of that context (the highest id) has it. A leader
// that takes over a status another one claimed and did not finish asks
// first: the other may have posted it and died before recording it.
//
// GitHub and Gitea: GET /repos/{owner}/{repo}/commits/{sha}/statuses
// (newest first; the first hundred are read). GitLab: GET
// /projects/{id}/repository/commits/{sha}/statuses?name={context}.
func hasState(ctx context.Context, client *http.Client, h Host, project string, s Status) (bool, error) {
	var u, want string
	switch h.Kind {
	case GitLab:
		q := url.Values{"name": {s.Context}, "per_page": {"100"}}
		u = h.API + "/projects/" + url.PathEscape(project) + "/repository/commits/" + url.PathEscape(s.SHA) + "/statuses?" + q.Encode()
		want = gitlabState(s.State)
	case GitHub:
		owner, repo, _ := strings.Cut(project, "/")
		u = h.API + "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(repo) + "/commits/" + url.PathEscape(s.SHA) + "/statuses?per_page=100"
		want = githubState(s.State)
	default:
		return false, fmt.Errorf("unknown git host kind %q", h.Kind)
	}
	req, err := h.request(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	resp, err := do(client, req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return false, nil // no such commit (yet): nothing was posted to it
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("%s answered %s to the commit's statuses: %s", h.Kind, resp.Status, bytes.TrimSpace(msg))
	}
	// GitHub names them "context" and "state", Gitea "context" and
	// "status", GitLab "name" and "status".
	var list []struct {
		ID      int64  `json:"id"`
		State   string `json:"state"`
		Context string `json:"context"`
		Status  string `json:"status"`
		Name    string `json:"name"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&list); err != nil {
		return false, fmt.Errorf("%s: the commit's statuses: %w", h.Kind, err)
	}
	newest, state := int64(-1), ""
	for _, e := range list {
		ctxName, st := e.Context, cmp.Or(e.State, e.Status)
		if h.Kind == GitLab {
			ctxName, st = e.Name, e.Status
		}
		if ctxName == s.Context && e.ID > newest {
			newest, state = e.ID, st
		}
	}
	return newest >= 0 && state == want, nil
}

func gitlabState(s State) string {
	switch s {
	case Running:
		return "running"
	case Success:
		return "success"
	default:
		return "failed"
	}
}

func githubState(s State) string {
	switch s {
	case Running:
		return "pending"
	case Success:
		return "success"
	default:
		return "failure"
	}
}
