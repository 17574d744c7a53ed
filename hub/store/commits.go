package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Deployment is one GitSync's relation to one commit.
type Deployment struct {
	SHA       string    `json:"sha"`
	Agent     string    `json:"agent"`
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	RepoURL   string    `json:"repoURL"`
	Revision  string    `json:"revision"`
	State     string    `json:"state"`
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
}

// Commit lists every GitSync that has, had, is applying or failed on the
// commit sha: 40 hex digits, or an abbreviation of at least 7.
func (s *Store) Commit(ctx context.Context, sha string) ([]Deployment, error) {
	sha = strings.ToLower(sha)
	if len(sha) < 7 || len(sha) > 40 || !isHex(sha) {
		return nil, fmt.Errorf("commit %q: want 7 to 40 hex digits", sha)
	}
	// A range over the primary key finds every sha with this prefix: "g"
	// sorts after every hex digit.
	rows, err := s.db.QueryContext(ctx, `SELECT sha, agent, namespace, name, repo_url, revision, state, first_seen, last_seen
		FROM revisions WHERE sha >= ? AND sha < ? ORDER BY agent, namespace, name, sha`, sha, sha+"g")
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", sha, err)
	}
	out, err := scanDeployments(rows)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", sha, err)
	}
	return out, nil
}

// PostedStatus returns the state last posted to the Git host for the commit
// and status context, or "" when none was.
func (s *Store) PostedStatus(ctx context.Context, sha, context string) (string, error) {
	var state string
	err := s.db.QueryRowContext(ctx, `SELECT state FROM commit_statuses WHERE sha = ? AND context = ?`, sha, context).Scan(&state)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		return "", fmt.Errorf("commit status %s %s: %w", sha, context, err)
	}
	return state, nil
}

// RecordPostedStatus remembers that state was posted for the commit and
// status context, so the same state is not posted twice.
func (s *Store) RecordPostedStatus(ctx context.Context, sha, context, state string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO commit_statuses(sha, context, state, posted) VALUES (?, ?, ?, ?)
		ON CONFLICT(sha, context) DO UPDATE SET state = excluded.state, posted = excluded.posted`,
		sha, context, state, ms(s.now()))
	if err != nil {
		return fmt.Errorf("commit status %s %s: %w", sha, context, err)
	}
	return nil
}

// History lists the commits one GitSync applied, is applying or failed
// on, newest first, at most limit of them.
func (s *Store) History(ctx context.Context, agent, namespace, name string, limit int) ([]Deployment, error) {
	id := agent + "/" + namespace + "/" + name
	rows, err := s.db.QueryContext(ctx, `SELECT sha, agent, namespace, name, repo_url, revision, state, first_seen, last_seen
		FROM revisions WHERE agent = ? AND namespace = ? AND name = ? ORDER BY first_seen DESC, sha LIMIT ?`,
		agent, namespace, name, limit)
	if err != nil {
		return nil, fmt.Errorf("gitsync %s history: %w", id, err)
	}
	out, err := scanDeployments(rows)
	if err != nil {
		return nil, fmt.Errorf("gitsync %s history: %w", id, err)
	}
	return out, nil
}

// scanDeployments reads rows of the revisions table (sha, agent,
// namespace, name, repo_url, revision, state, first_seen, last_seen) and
// closes them.
func scanDeployments(rows *sql.Rows) ([]Deployment, error) {
	defer rows.Close()
	out := []Deployment{}
	for rows.Next() {
		var d Deployment
		var first, last int64
		if err := rows.Scan(&d.SHA, &d.Agent, &d.Namespace, &d.Name, &d.RepoURL, &d.Revision, &d.State, &first, &last); err != nil {
			return nil, err
		}
		d.FirstSeen, d.LastSeen = fromMS(first), fromMS(last)
		out = append(out, d)
	}
	return out, rows.Err()
}
