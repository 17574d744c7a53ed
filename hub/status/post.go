package status

import (
	"bytes"
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
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
		if err != nil {
			return errPermanent{err}
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("PRIVATE-TOKEN", h.Token)
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
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
		if err != nil {
			return errPermanent{err}
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/vnd.github+json")
		req.Header.Set("Authorization", "token "+h.Token)
	default:
		return errPermanent{fmt.Errorf("unknown git host kind %q", h.Kind)}
	}
	req.Header.Set("User-Agent", "tether-hub")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is logged by the caller; keep the cause
		}
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
