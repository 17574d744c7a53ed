package store

import (
	"context"
	"fmt"
	"net/url"

	"tether.dev/tether/hub/giturl"
)

// Project is a name and the repositories it owns. A project's tokens see
// the GitSyncs whose source is one of its repositories.
type Project struct {
	Name string
	// Repos are the repository URLs as given (userinfo stripped), sorted.
	Repos []string
	// Keys are the giturl keys of Repos, what GitSync sources match on.
	Keys []string
}

// CreateProject makes the project name, or adds repos to it when it
// exists: running it twice changes nothing. Every repo must be a Git URL;
// on a bad one nothing is stored.
func (s *Store) CreateProject(ctx context.Context, name string, repos []string) error {
	if name == "" {
		return fmt.Errorf("project: a name is required")
	}
	type repo struct{ key, url string }
	var rs []repo
	for _, raw := range repos {
		key := giturl.Key(raw)
		if key == "" {
			return fmt.Errorf("project %s: repository %q is not a Git URL (https://host/group/repo, ssh://git@host/group/repo or git@host:group/repo)", name, stripUserinfo(raw))
		}
		rs = append(rs, repo{key, stripUserinfo(raw)})
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("project %s: %w", name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO projects(name, created) VALUES (?, ?) ON CONFLICT(name) DO NOTHING`, name, ms(s.now())); err != nil {
		return fmt.Errorf("project %s: %w", name, err)
	}
	for _, r := range rs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO project_repos(project, repo_key, url) VALUES (?, ?, ?)
			ON CONFLICT(project, repo_key) DO NOTHING`, name, r.key, r.url); err != nil {
			return fmt.Errorf("project %s: repository %s: %w", name, r.url, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("project %s: %w", name, err)
	}
	return nil
}

// stripUserinfo drops credentials from a URL before it is stored or shown.
func stripUserinfo(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || u.Scheme == "" {
		return raw
	}
	u.User = nil
	return u.String()
}

// Projects lists every project with its repositories, by name.
func (s *Store) Projects(ctx context.Context) ([]Project, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT p.name, coalesce(r.url, ''), coalesce(r.repo_key, '')
		FROM projects p LEFT JOIN project_repos r ON r.project = p.name ORDER BY p.name, r.url`)
	if err != nil {
		return nil, fmt.Errorf("projects: %w", err)
	}
	defer rows.Close()
	out := []Project{}
	for rows.Next() {
		var name, u, key string
		if err := rows.Scan(&name, &u, &key); err != nil {
			return nil, fmt.Errorf("projects: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].Name != name {
			out = append(out, Project{Name: name})
		}
		if u != "" {
			p := &out[len(out)-1]
			p.Repos = append(p.Repos, u)
			p.Keys = append(p.Keys, key)
		}
	}
	return out, rows.Err()
}

// Project returns one project, or ErrNotFound.
func (s *Store) Project(ctx context.Context, name string) (Project, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM projects WHERE name = ?`, name).Scan(&n); err != nil {
		return Project{}, fmt.Errorf("project %s: %w", name, err)
	}
	if n == 0 {
		return Project{}, fmt.Errorf("project %s: %w", name, ErrNotFound)
	}
	p := Project{Name: name}
	rows, err := s.db.QueryContext(ctx, `SELECT url, repo_key FROM project_repos WHERE project = ? ORDER BY url`, name)
	if err != nil {
		return Project{}, fmt.Errorf("project %s: %w", name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var u, key string
		if err := rows.Scan(&u, &key); err != nil {
			return Project{}, fmt.Errorf("project %s: %w", name, err)
		}
		p.Repos = append(p.Repos, u)
		p.Keys = append(p.Keys, key)
	}
	return p, rows.Err()
}
