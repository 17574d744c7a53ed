// Package giturl parses the ways one Git repository is spelled (HTTPS,
// ssh://, scp-like git@host:path) into a host and a path, so that the hub
// can tell that a pushed repository and a GitSync's source are the same.
// It never contacts a Git host.
package giturl

import (
	"net/url"
	"strings"
)

// Repo is a repository address reduced to what identifies it.
type Repo struct {
	// Host is the lower-case host name, without port or user.
	Host string
	// Path is the repository path without leading or trailing slashes and
	// without a trailing ".git", e.g. "group/sub/project". Case is kept:
	// some hosts treat paths case-sensitively.
	Path string
}

// Key is the repository's identity for comparisons: host and path, path
// folded to lower case because GitLab, GitHub and Gitea all resolve paths
// case-insensitively.
func (r Repo) Key() string { return r.Host + "/" + strings.ToLower(r.Path) }

// Parse reads a Git URL: "https://host/group/project.git",
// "ssh://git@host:2222/group/project", "git@host:group/project.git" or
// "host/group/project". It reports false when no host or path is found.
func Parse(raw string) (Repo, bool) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return Repo{}, false
	}
	var host, path string
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return Repo{}, false
		}
		host, path = u.Hostname(), u.Path
	} else if at := strings.Index(s, ":"); at > 0 && !strings.Contains(s[:at], "/") {
		// scp-like syntax: [user@]host:path
		host, path = s[:at], s[at+1:]
		if i := strings.LastIndex(host, "@"); i >= 0 {
			host = host[i+1:]
		}
	} else if slash := strings.Index(s, "/"); slash > 0 {
		host, path = s[:slash], s[slash:]
	} else {
		return Repo{}, false
	}
	path = strings.Trim(path, "/")
	path = strings.TrimSuffix(path, ".git")
	path = strings.Trim(path, "/")
	host = strings.ToLower(host)
	if host == "" || path == "" {
		return Repo{}, false
	}
	return Repo{Host: host, Path: path}, true
}

// Same reports whether a and b name the same repository.
func Same(a, b string) bool {
	ra, okA := Parse(a)
	rb, okB := Parse(b)
	return okA && okB && ra.Key() == rb.Key()
}

// Key returns the identity of raw for comparisons, or "" when raw is not a
// Git URL.
func Key(raw string) string {
	r, ok := Parse(raw)
	if !ok {
		return ""
	}
	return r.Key()
}
