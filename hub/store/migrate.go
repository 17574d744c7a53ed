package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order, each once, each in its own transaction.
// Never edit one that has shipped: append a new one.
var migrations = []string{
	// 1: the first schema.
	`
CREATE TABLE agents (
	name        TEXT PRIMARY KEY,
	connected   INTEGER NOT NULL DEFAULT 0,
	last_seen   INTEGER NOT NULL DEFAULT 0,
	version     TEXT NOT NULL DEFAULT '',
	cluster_uid TEXT NOT NULL DEFAULT '',
	created     INTEGER NOT NULL
);
CREATE TABLE tokens (
	id      INTEGER PRIMARY KEY,
	kind    TEXT NOT NULL,    -- 'agent' or 'api'
	subject TEXT NOT NULL,    -- the agent's name, or the API client's name
	lookup  TEXT NOT NULL,    -- first 16 hex digits of hash, for the index
	hash    TEXT NOT NULL,    -- hex sha256 of the token
	created INTEGER NOT NULL,
	revoked INTEGER           -- unix ms, NULL while valid
);
CREATE INDEX tokens_lookup ON tokens(lookup);
CREATE INDEX tokens_subject ON tokens(kind, subject);
CREATE TABLE gitsyncs (
	agent              TEXT NOT NULL,
	namespace          TEXT NOT NULL,
	name               TEXT NOT NULL,
	state_version      INTEGER NOT NULL,
	source_url         TEXT NOT NULL DEFAULT '',
	ref                TEXT NOT NULL DEFAULT '',
	path               TEXT NOT NULL DEFAULT '',
	revision           TEXT NOT NULL DEFAULT '',
	attempted_revision TEXT NOT NULL DEFAULT '',
	phase              TEXT NOT NULL DEFAULT '',
	message            TEXT NOT NULL DEFAULT '',
	drift_count        INTEGER NOT NULL DEFAULT 0,
	last_sync          INTEGER NOT NULL DEFAULT 0,
	deleted            INTEGER NOT NULL DEFAULT 0,
	updated            INTEGER NOT NULL,
	report             BLOB,  -- the whole SyncReport, protobuf
	PRIMARY KEY (agent, namespace, name)
);
CREATE TABLE revisions (
	sha        TEXT NOT NULL,
	agent      TEXT NOT NULL,
	namespace  TEXT NOT NULL,
	name       TEXT NOT NULL,
	repo_url   TEXT NOT NULL DEFAULT '',
	revision   TEXT NOT NULL DEFAULT '',
	state      TEXT NOT NULL,  -- live, applying, failed, superseded
	first_seen INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL,
	PRIMARY KEY (sha, agent, namespace, name)
);
CREATE INDEX revisions_gitsync ON revisions(agent, namespace, name, state);
CREATE TABLE commit_statuses (
	sha     TEXT NOT NULL,
	context TEXT NOT NULL,
	state   TEXT NOT NULL,
	posted  INTEGER NOT NULL,
	PRIMARY KEY (sha, context)
);
`,
	// 2: projects (a name and the repositories it owns) and scoped tokens:
	// tokens of kind 'project' or 'user' carry their actions.
	`
CREATE TABLE projects (
	name    TEXT PRIMARY KEY,
	created INTEGER NOT NULL
);
CREATE TABLE project_repos (
	project  TEXT NOT NULL REFERENCES projects(name),
	repo_key TEXT NOT NULL,  -- giturl.Key of url: what a GitSync's source is matched on
	url      TEXT NOT NULL,  -- as given, userinfo stripped
	PRIMARY KEY (project, repo_key)
);
ALTER TABLE tokens ADD COLUMN actions TEXT NOT NULL DEFAULT '';  -- comma-separated, scoped tokens only
`,
}

func migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("schema_migrations: %w", err)
	}
	for i, m := range migrations {
		version := i + 1
		if err := applyMigration(ctx, db, version, m); err != nil {
			return fmt.Errorf("schema migration %d: %w", version, err)
		}
	}
	return nil
}

// applyMigration runs one migration unless it already ran. The check and
// the change share a write transaction, so two hubs starting on the same
// file cannot both apply it.
func applyMigration(ctx context.Context, db *sql.DB, version int, stmt string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied) VALUES (?, strftime('%s','now')*1000)`, version); err != nil {
		return err
	}
	return tx.Commit()
}

// SchemaVersion is the highest migration applied to the database.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v)
	return int(v.Int64), err
}
