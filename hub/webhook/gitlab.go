package webhook

import (
	"encoding/json"
	"net/http"
	"strings"
)

// gitlabPush is the part of GitLab's "Push Hook" and "Tag Push Hook"
// payloads the hub reads.
type gitlabPush struct {
	ObjectKind string `json:"object_kind"`
	Ref        string `json:"ref"`
	After      string `json:"after"`
	Project    struct {
		GitHTTPURL    string `json:"git_http_url"`
		GitSSHURL     string `json:"git_ssh_url"`
		WebURL        string `json:"web_url"`
		DefaultBranch string `json:"default_branch"`
	} `json:"project"`
	Repository struct {
		URL        string `json:"url"`
		Homepage   string `json:"homepage"`
		GitHTTPURL string `json:"git_http_url"`
		GitSSHURL  string `json:"git_ssh_url"`
	} `json:"repository"`
}

// GitLab serves POST /hooks/gitlab. The X-Gitlab-Token header must equal
// the secret exactly.
func (rc *Receiver) GitLab() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.serve(w, r, hook{
			provider: "gitlab",
			// The secret is in a header: a wrong one is refused unread.
			headers: func(r *http.Request) bool { return equalSecret(r.Header.Get("X-Gitlab-Token"), rc.Secret) },
			body:    func(*http.Request, []byte) bool { return true },
			parse:   parseGitLab,
		})
	})
}

func parseGitLab(_ *http.Request, body []byte) (*Push, string, error) {
	var p gitlabPush
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, "", err
	}
	if p.ObjectKind != "push" && p.ObjectKind != "tag_push" {
		return nil, "event " + p.ObjectKind, nil
	}
	urls := nonEmpty(p.Project.GitHTTPURL, p.Project.GitSSHURL, p.Project.WebURL,
		p.Repository.GitHTTPURL, p.Repository.GitSSHURL, p.Repository.Homepage, p.Repository.URL)
	if len(urls) == 0 {
		return nil, "", errNoRepo
	}
	if !strings.HasPrefix(p.Ref, "refs/") {
		return nil, "", errBadRef(p.Ref)
	}
	return &Push{URLs: urls, Ref: p.Ref, DefaultBranch: p.Project.DefaultBranch, Deleted: zeroSHA(p.After)}, "", nil
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func zeroSHA(s string) bool { return s != "" && strings.Trim(s, "0") == "" }

type errBadRef string

func (e errBadRef) Error() string { return "ref " + string(e) + " is not a full ref (refs/...)" }
