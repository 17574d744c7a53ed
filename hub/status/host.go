// Package status posts commit statuses to Git hosts (GitLab's API, and
// GitHub's, which Gitea serves too), so a merge request shows where its
// commit is deployed. Tokens are sent, never logged.
//
// The statuses wait in an outbox in the hub's database (Outbox, the
// store's status_outbox): whichever hub replica stores a report queues the
// status it implies, in the report's transaction, one row per commit and
// context with the latest state wanted. The Poster of the hub that leads
// reads it (woken by Wake, or polling), claims rows with a conditional
// UPDATE (two hubs that both believe they lead for a moment never post
// the same row), posts, and in one transaction records the state as
// posted and deletes the row unless a newer state was queued meanwhile.
// Transient failures are retried with backoff kept in the row; a refusal
// (4xx) drops it. A row claimed by a leader that died, or gave up unsure,
// may have been posted and not recorded: whoever claims it next asks the
// host for the commit's statuses first and posts only when the context
// lacks the state. So each state is posted once per commit and context,
// across restarts and leader changes; a post whose answer is lost and
// that the host applies after the next leader asked is the one window
// left.
package status

import (
	"fmt"
	"net/url"
	"strings"

	"tether.dev/tether/hub/giturl"
)

// Kind is the API dialect of a Git host.
type Kind string

// The Git host APIs the poster speaks.
const (
	GitLab Kind = "gitlab"
	GitHub Kind = "github" // GitHub, GitHub Enterprise and Gitea
)

// Host is one Git host the hub may post to.
type Host struct {
	Kind Kind
	// API is the base of the API: "https://gitlab.example.com/api/v4",
	// "https://api.github.com", "https://gitea.example.com/api/v1".
	API string
	// RepoHost is the host name in the URLs of the repositories it serves
	// ("github.com" for api.github.com).
	RepoHost string
	// PathPrefix is stripped from repository paths: a GitLab installed
	// under a relative URL root such as https://example.com/gitlab.
	PathPrefix string
	Token      string
}

// NewGitLab configures a GitLab server from its web URL
// (https://gitlab.example.com) and a token with the api scope.
func NewGitLab(webURL, token string) (Host, error) {
	u, err := parseBase(webURL)
	if err != nil {
		return Host{}, fmt.Errorf("gitlab url %q: %w", webURL, err)
	}
	prefix := strings.Trim(u.Path, "/")
	api := strings.TrimSuffix(u.String(), "/") + "/api/v4"
	return Host{Kind: GitLab, API: api, RepoHost: strings.ToLower(u.Hostname()), PathPrefix: prefix, Token: token}, nil
}

// NewGitHub configures a GitHub-shaped API from its base URL:
// https://api.github.com, https://ghe.example.com/api/v3 or a Gitea's
// https://gitea.example.com/api/v1.
func NewGitHub(apiURL, token string) (Host, error) {
	u, err := parseBase(apiURL)
	if err != nil {
		return Host{}, fmt.Errorf("github api url %q: %w", apiURL, err)
	}
	repoHost := strings.ToLower(u.Hostname())
	if repoHost == "api.github.com" {
		repoHost = "github.com"
	}
	return Host{Kind: GitHub, API: strings.TrimSuffix(u.String(), "/"), RepoHost: repoHost, Token: token}, nil
}

func parseBase(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("want an http(s) URL")
	}
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

// project returns the repository's path on host h, or false when h does
// not serve repoURL.
func (h Host) project(repoURL string) (string, bool) {
	r, ok := giturl.Parse(repoURL)
	if !ok || r.Host != h.RepoHost {
		return "", false
	}
	p := r.Path
	if h.PathPrefix != "" {
		if !strings.HasPrefix(p, h.PathPrefix+"/") {
			return "", false
		}
		p = strings.TrimPrefix(p, h.PathPrefix+"/")
	}
	if h.Kind == GitHub && strings.Count(p, "/") != 1 {
		return "", false // GitHub and Gitea repositories are owner/name
	}
	return p, true
}

// String names the host for logs and metrics, without its token.
func (h Host) String() string { return string(h.Kind) + " " + h.API }
