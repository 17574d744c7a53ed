package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"tether.dev/tether/channel/channelpb"
)

// GitSync is the latest reported state of one GitSync on one agent.
type GitSync struct {
	Agent             string
	Namespace         string
	Name              string
	StateVersion      uint64
	SourceURL         string
	Ref               string
	Path              string
	Revision          string
	AttemptedRevision string
	Phase             string
	Message           string
	DriftCount        int
	LastSync          time.Time
	Updated           time.Time
	// Report is the whole last report (conditions, namespaces, drift).
	Report *channelpb.SyncReport
}

const gitsyncColumns = `agent, namespace, name, state_version, source_url, ref, path, revision,
	attempted_revision, phase, message, drift_count, last_sync, updated, report`

func scanGitSync(sc interface{ Scan(...any) error }) (GitSync, error) {
	var g GitSync
	var version, lastSync, updated int64
	var blob []byte
	if err := sc.Scan(&g.Agent, &g.Namespace, &g.Name, &version, &g.SourceURL, &g.Ref, &g.Path,
		&g.Revision, &g.AttemptedRevision, &g.Phase, &g.Message, &g.DriftCount, &lastSync, &updated, &blob); err != nil {
		return GitSync{}, err
	}
	g.StateVersion = uint64(version)
	g.LastSync = fromMS(lastSync)
	g.Updated = fromMS(updated)
	g.Report = &channelpb.SyncReport{}
	if len(blob) > 0 {
		if err := proto.Unmarshal(blob, g.Report); err != nil {
			return GitSync{}, fmt.Errorf("gitsync %s/%s/%s report: %w", g.Agent, g.Namespace, g.Name, err)
		}
	}
	return g, nil
}

// GitSyncs lists the GitSyncs that still exist, of one agent or (agent "")
// of all, ordered by agent, namespace and name.
func (s *Store) GitSyncs(ctx context.Context, agent string) ([]GitSync, error) {
	q := `SELECT ` + gitsyncColumns + ` FROM gitsyncs WHERE deleted = 0`
	args := []any{}
	if agent != "" {
		q += ` AND agent = ?`
		args = append(args, agent)
	}
	q += ` ORDER BY agent, namespace, name`
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("gitsyncs: %w", err)
	}
	defer rows.Close()
	out := []GitSync{}
	for rows.Next() {
		g, err := scanGitSync(rows)
		if err != nil {
			return nil, fmt.Errorf("gitsyncs: %w", err)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// GitSync returns one GitSync that still exists, or ErrNotFound.
func (s *Store) GitSync(ctx context.Context, agent, namespace, name string) (GitSync, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+gitsyncColumns+` FROM gitsyncs
		WHERE agent = ? AND namespace = ? AND name = ? AND deleted = 0`, agent, namespace, name)
	g, err := scanGitSync(row)
	if err != nil {
		return GitSync{}, notFound(err, fmt.Sprintf("gitsync %s/%s/%s", agent, namespace, name))
	}
	return g, nil
}

func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}
