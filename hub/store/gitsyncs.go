package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// GitSync is the latest reported state of one GitSync on one agent.
type GitSync struct {
	Agent        string
	Namespace    string
	Name         string
	StateVersion uint64
	SourceURL    string
	// Ref is the agent's "kind:name" ("branch:main"); RefKind and RefName
	// are its two halves.
	Ref               string
	RefKind           string
	RefName           string
	Path              string
	Revision          string
	AttemptedRevision string
	Phase             string
	Message           string
	DriftCount        int
	// WarningEvents is how many Warning events of its objects the agent
	// has seen.
	WarningEvents int64
	LastSync      time.Time
	Updated       time.Time
	Conditions    []Condition
	Namespaces    []NamespaceCount
	Drifted       []DriftedObject
}

// Condition is one status condition of a GitSync.
type Condition struct {
	Type, Status, Reason, Message string
	LastTransition                time.Time
}

// NamespaceCount is how many objects a GitSync manages in a namespace.
type NamespaceCount struct {
	Namespace string
	Objects   int32
}

// DriftedObject is one object whose live state differs from Git.
type DriftedObject struct {
	Group, Kind, Namespace, Name string
	Paths, Managers              []string
	Detected                     time.Time
	Deleted                      bool
}

type gitsyncKey struct{ agent, namespace, name string }

const gitsyncColumns = `agent, namespace, name, state_version, source_url, ref, ref_kind, ref_name, path, revision,
	attempted_revision, phase, message, drift_count, warning_events, last_sync, updated`

func scanGitSync(sc interface{ Scan(...any) error }) (GitSync, error) {
	var g GitSync
	var version, lastSync, updated int64
	if err := sc.Scan(&g.Agent, &g.Namespace, &g.Name, &version, &g.SourceURL, &g.Ref, &g.RefKind, &g.RefName, &g.Path,
		&g.Revision, &g.AttemptedRevision, &g.Phase, &g.Message, &g.DriftCount, &g.WarningEvents, &lastSync, &updated); err != nil {
		return GitSync{}, err
	}
	g.StateVersion = uint64(version)
	g.LastSync = fromMS(lastSync)
	g.Updated = fromMS(updated)
	return g, nil
}

// GitSyncs lists the GitSyncs that still exist, of one agent or (agent "")
// of all, ordered by agent, namespace and name.
func (s *Store) GitSyncs(ctx context.Context, agent string) ([]GitSync, error) {
	var out []GitSync
	err := s.snapshot(ctx, func(q querier) error {
		var err error
		out, err = s.gitSyncs(ctx, q, agent)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("gitsyncs: %w", err)
	}
	return out, nil
}

func (s *Store) gitSyncs(ctx context.Context, q querier, agent string) ([]GitSync, error) {
	where := `deleted = 0`
	args := []any{}
	if agent != "" {
		where += ` AND agent = ?`
		args = append(args, agent)
	}
	rows, err := q.QueryContext(ctx, `SELECT `+gitsyncColumns+` FROM gitsyncs WHERE `+where+` ORDER BY agent, namespace, name`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []GitSync{}
	for rows.Next() {
		g, err := scanGitSync(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	s.betweenReads()
	// The child rows of the listed GitSyncs: the same filter, joined.
	childWhere := `EXISTS (SELECT 1 FROM gitsyncs g
		WHERE g.agent = c.agent AND g.namespace = c.namespace AND g.name = c.name AND g.deleted = 0)`
	if agent != "" {
		childWhere = `c.agent = ? AND ` + childWhere
	}
	if err := s.loadChildren(ctx, q, out, childWhere, args); err != nil {
		return nil, err
	}
	return out, nil
}

// GitSync returns one GitSync that still exists, or ErrNotFound.
func (s *Store) GitSync(ctx context.Context, agent, namespace, name string) (GitSync, error) {
	id := fmt.Sprintf("gitsync %s/%s/%s", agent, namespace, name)
	var g GitSync
	err := s.snapshot(ctx, func(q querier) error {
		row := q.QueryRowContext(ctx, `SELECT `+gitsyncColumns+` FROM gitsyncs
			WHERE agent = ? AND namespace = ? AND name = ? AND deleted = 0`, agent, namespace, name)
		var err error
		if g, err = scanGitSync(row); err != nil {
			return err
		}
		s.betweenReads()
		gs := []GitSync{g}
		err = s.loadChildren(ctx, q, gs, `c.agent = ? AND c.namespace = ? AND c.name = ?`, []any{agent, namespace, name})
		g = gs[0]
		return err
	})
	if err != nil {
		return GitSync{}, notFound(err, id)
	}
	return g, nil
}

// querier runs queries: the database, or a transaction of it.
type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// snapshot runs read in one read-only transaction, so a GitSync and its
// child rows come from one moment even while reports are written: a
// REPEATABLE READ snapshot on PostgreSQL, a deferred transaction in WAL
// mode on SQLite (its snapshot starts at the first read).
func (s *Store) snapshot(ctx context.Context, read func(q querier) error) error {
	t, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return err
	}
	defer t.Rollback()
	if err := read(t); err != nil {
		return err
	}
	return t.Commit()
}

// betweenReads is called by a snapshot read between its GitSync rows and
// their child rows: tests write there to see the snapshot hold.
func (s *Store) betweenReads() {
	if s.testBetweenReads != nil {
		s.testBetweenReads()
	}
}

// loadChildren fills the conditions, namespace counts and drifted objects
// of gs from the child rows (aliased c) that match where.
func (s *Store) loadChildren(ctx context.Context, q querier, gs []GitSync, where string, args []any) error {
	if len(gs) == 0 {
		return nil
	}
	idx := make(map[gitsyncKey]*GitSync, len(gs))
	for i := range gs {
		idx[gitsyncKey{gs[i].Agent, gs[i].Namespace, gs[i].Name}] = &gs[i]
	}
	children := []struct {
		query string
		scan  childScan
	}{
		{`SELECT c.agent, c.namespace, c.name, c.type, c.status, c.reason, c.message, c.last_transition
			FROM gitsync_conditions c WHERE ` + where + ` ORDER BY c.agent, c.namespace, c.name, c.position`,
			func(rows *sql.Rows, key []any) (func(*GitSync), error) {
				var c Condition
				var t int64
				if err := rows.Scan(append(key, &c.Type, &c.Status, &c.Reason, &c.Message, &t)...); err != nil {
					return nil, err
				}
				c.LastTransition = fromMS(t)
				return func(g *GitSync) { g.Conditions = append(g.Conditions, c) }, nil
			}},
		{`SELECT c.agent, c.namespace, c.name, c.object_namespace, c.objects
			FROM gitsync_namespaces c WHERE ` + where + ` ORDER BY c.agent, c.namespace, c.name, c.position`,
			func(rows *sql.Rows, key []any) (func(*GitSync), error) {
				var n NamespaceCount
				if err := rows.Scan(append(key, &n.Namespace, &n.Objects)...); err != nil {
					return nil, err
				}
				return func(g *GitSync) { g.Namespaces = append(g.Namespaces, n) }, nil
			}},
		{`SELECT c.agent, c.namespace, c.name, c.obj_group, c.obj_kind, c.obj_namespace, c.obj_name, c.paths, c.managers, c.detected, c.deleted
			FROM gitsync_drift c WHERE ` + where + ` ORDER BY c.agent, c.namespace, c.name, c.position`,
			func(rows *sql.Rows, key []any) (func(*GitSync), error) {
				var d DriftedObject
				var paths, managers string
				var detected int64
				if err := rows.Scan(append(key, &d.Group, &d.Kind, &d.Namespace, &d.Name, &paths, &managers, &detected, &d.Deleted)...); err != nil {
					return nil, err
				}
				d.Paths, d.Managers, d.Detected = lines(paths), lines(managers), fromMS(detected)
				return func(g *GitSync) { g.Drifted = append(g.Drifted, d) }, nil
			}},
	}
	for _, c := range children {
		if err := scanChildren(ctx, q, c.query, args, idx, c.scan); err != nil {
			return err
		}
	}
	return nil
}

// childScan reads one child row: the GitSync's key into key, then its own
// columns; it returns how to add the row to its GitSync.
type childScan func(rows *sql.Rows, key []any) (func(*GitSync), error)

func scanChildren(ctx context.Context, q querier, query string, args []any, idx map[gitsyncKey]*GitSync, scan childScan) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k gitsyncKey
		add, err := scan(rows, []any{&k.agent, &k.namespace, &k.name})
		if err != nil {
			return err
		}
		if g := idx[k]; g != nil {
			add(g)
		}
	}
	return rows.Err()
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Follower is a GitSync that follows a repository: what a push webhook
// needs to tell its agent to sync now.
type Follower struct {
	Agent, Namespace, Name string
	// SourceURL is the GitSync's own spelling of the repository's URL,
	// Ref its "kind:name".
	SourceURL, Ref string
}

// Followers lists the GitSyncs that still exist and follow one of the
// repositories named by keys (giturl.Key of their URLs), ordered by
// agent, namespace and name. It reads an index, not every GitSync.
func (s *Store) Followers(ctx context.Context, keys []string) ([]Follower, error) {
	keys = slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == "" })
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if len(keys) == 0 {
		return nil, nil
	}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	rows, err := s.db.QueryContext(ctx, `SELECT agent, namespace, name, source_url, ref FROM gitsyncs
		WHERE repo_key IN (?`+strings.Repeat(", ?", len(keys)-1)+`) AND deleted = 0
		ORDER BY agent, namespace, name`, args...)
	if err != nil {
		return nil, fmt.Errorf("gitsyncs following %s: %w", strings.Join(keys, ", "), err)
	}
	defer rows.Close()
	var out []Follower
	for rows.Next() {
		var f Follower
		if err := rows.Scan(&f.Agent, &f.Namespace, &f.Name, &f.SourceURL, &f.Ref); err != nil {
			return nil, fmt.Errorf("gitsyncs following %s: %w", strings.Join(keys, ", "), err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("gitsyncs following %s: %w", strings.Join(keys, ", "), err)
	}
	return out, nil
}
