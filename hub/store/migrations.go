package store

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/giturl"
)

// migration is one step of the schema: SQL in the dialect both databases
// accept ({{id}} and {{blob}} are filled per dialect), then code for what
// SQL cannot do. Never edit one that has shipped: append a new one.
//
// BIGINT is what PostgreSQL needs for unix milliseconds; SQLite gives it
// the same integer affinity as the INTEGER the first release wrote.
type migration struct {
	sql  string
	code func(ctx context.Context, t tx) error
}

var migrations = []migration{
	// 1: the first schema.
	{sql: `
CREATE TABLE agents (
	name        TEXT PRIMARY KEY,
	connected   INTEGER NOT NULL DEFAULT 0,
	last_seen   BIGINT NOT NULL DEFAULT 0,
	version     TEXT NOT NULL DEFAULT '',
	cluster_uid TEXT NOT NULL DEFAULT '',
	created     BIGINT NOT NULL
);
CREATE TABLE tokens (
	id      {{id}},
	kind    TEXT NOT NULL,    -- 'agent' or 'api'
	subject TEXT NOT NULL,    -- the agent's name, or the API client's name
	lookup  TEXT NOT NULL,    -- first 16 hex digits of hash, for the index
	hash    TEXT NOT NULL,    -- hex sha256 of the token
	created BIGINT NOT NULL,
	revoked BIGINT            -- unix ms, NULL while valid
);
CREATE INDEX tokens_lookup ON tokens(lookup);
CREATE INDEX tokens_subject ON tokens(kind, subject);
CREATE TABLE gitsyncs (
	agent              TEXT NOT NULL,
	namespace          TEXT NOT NULL,
	name               TEXT NOT NULL,
	state_version      BIGINT NOT NULL,
	source_url         TEXT NOT NULL DEFAULT '',
	ref                TEXT NOT NULL DEFAULT '',
	path               TEXT NOT NULL DEFAULT '',
	revision           TEXT NOT NULL DEFAULT '',
	attempted_revision TEXT NOT NULL DEFAULT '',
	phase              TEXT NOT NULL DEFAULT '',
	message            TEXT NOT NULL DEFAULT '',
	drift_count        BIGINT NOT NULL DEFAULT 0,
	last_sync          BIGINT NOT NULL DEFAULT 0,
	deleted            INTEGER NOT NULL DEFAULT 0,
	updated            BIGINT NOT NULL,
	report             {{blob}},  -- the whole SyncReport, protobuf (moved to columns by 3)
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
	first_seen BIGINT NOT NULL,
	last_seen  BIGINT NOT NULL,
	PRIMARY KEY (sha, agent, namespace, name)
);
CREATE INDEX revisions_gitsync ON revisions(agent, namespace, name, state);
CREATE TABLE commit_statuses (
	sha     TEXT NOT NULL,
	context TEXT NOT NULL,
	state   TEXT NOT NULL,
	posted  BIGINT NOT NULL,
	PRIMARY KEY (sha, context)
);
`},
	// 2: projects (a name and the repositories it owns) and scoped tokens:
	// tokens of kind 'project' or 'user' carry their actions.
	{sql: `
CREATE TABLE projects (
	name    TEXT PRIMARY KEY,
	created BIGINT NOT NULL
);
CREATE TABLE project_repos (
	project  TEXT NOT NULL REFERENCES projects(name),
	repo_key TEXT NOT NULL,  -- giturl.Key of url: what a GitSync's source is matched on
	url      TEXT NOT NULL,  -- as given, userinfo stripped
	PRIMARY KEY (project, repo_key)
);
ALTER TABLE tokens ADD COLUMN actions TEXT NOT NULL DEFAULT '';  -- comma-separated, scoped tokens only
`},
	// 3: what the hub reads of a report, in columns and child tables
	// instead of the protobuf blob; the blobs of a database that has them
	// are moved over, then the column goes. Phase and ref kind are strings,
	// whatever the wire carries them as.
	{sql: `
ALTER TABLE gitsyncs ADD COLUMN ref_kind TEXT NOT NULL DEFAULT '';        -- branch, tag, semver, commit
ALTER TABLE gitsyncs ADD COLUMN ref_name TEXT NOT NULL DEFAULT '';
ALTER TABLE gitsyncs ADD COLUMN warning_events BIGINT NOT NULL DEFAULT 0; -- Warning events the agent has seen
ALTER TABLE gitsyncs ADD COLUMN children_hash TEXT NOT NULL DEFAULT '';   -- fingerprint of the child rows below
CREATE TABLE gitsync_conditions (
	agent           TEXT NOT NULL,
	namespace       TEXT NOT NULL,
	name            TEXT NOT NULL,
	position        INTEGER NOT NULL,  -- order in the report
	type            TEXT NOT NULL,
	status          TEXT NOT NULL DEFAULT '',
	reason          TEXT NOT NULL DEFAULT '',
	message         TEXT NOT NULL DEFAULT '',
	last_transition BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (agent, namespace, name, position)
);
CREATE TABLE gitsync_namespaces (
	agent            TEXT NOT NULL,
	namespace        TEXT NOT NULL,
	name             TEXT NOT NULL,
	position         INTEGER NOT NULL,
	object_namespace TEXT NOT NULL,
	objects          BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (agent, namespace, name, position)
);
CREATE TABLE gitsync_drift (
	agent         TEXT NOT NULL,
	namespace     TEXT NOT NULL,
	name          TEXT NOT NULL,
	position      INTEGER NOT NULL,
	obj_group     TEXT NOT NULL DEFAULT '',
	obj_kind      TEXT NOT NULL DEFAULT '',
	obj_namespace TEXT NOT NULL DEFAULT '',
	obj_name      TEXT NOT NULL DEFAULT '',
	paths         TEXT NOT NULL DEFAULT '',  -- field paths, one a line (Kubernetes keys hold no newline)
	managers      TEXT NOT NULL DEFAULT '',  -- field managers, one a line
	detected      BIGINT NOT NULL DEFAULT 0,
	deleted       INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (agent, namespace, name, position)
);
`, code: moveReportBlobs},
	// 4: the leader's lease, and indexes for retention's deletes.
	{sql: `
CREATE TABLE leases (
	name    TEXT PRIMARY KEY,
	holder  TEXT NOT NULL,
	expires BIGINT NOT NULL  -- unix ms
);
CREATE INDEX revisions_last_seen ON revisions(last_seen);
CREATE INDEX commit_statuses_posted ON commit_statuses(posted);
`},
	// 5: hub replicas on one database: each registers itself (the URL its
	// peers reach it at, a heartbeat), and an agent's row names the
	// replica that holds its stream. SQLite has one replica and leaves
	// both empty.
	{sql: `
CREATE TABLE replicas (
	id        TEXT PRIMARY KEY,
	url       TEXT NOT NULL DEFAULT '',  -- how peers reach it; '' when they cannot
	heartbeat BIGINT NOT NULL            -- unix ms
);
ALTER TABLE agents ADD COLUMN replica TEXT NOT NULL DEFAULT '';  -- replicas.id holding the stream, '' when none
`},
	// 6: what each hub kept in its memory, so that every replica serves
	// the same: the recent Warning events of each GitSync (see
	// events.go), and the page's sessions (see sessions.go), which keep a
	// hash of the session id and the token's row, never the id or the
	// token.
	{sql: `
CREATE TABLE gitsync_events (
	agent         TEXT NOT NULL,
	namespace     TEXT NOT NULL,
	name          TEXT NOT NULL,
	fold          TEXT NOT NULL,    -- hex sha256 of kind, object, reason and message: what folds into one row
	seq           BIGINT NOT NULL,  -- order of arrival in the GitSync, the newest highest
	kind          TEXT NOT NULL,
	obj_namespace TEXT NOT NULL DEFAULT '',
	obj_name      TEXT NOT NULL,
	reason        TEXT NOT NULL DEFAULT '',
	message       TEXT NOT NULL DEFAULT '',
	count         BIGINT NOT NULL,
	first_seen    BIGINT NOT NULL,  -- unix ms, as the agent saw them
	last_seen     BIGINT NOT NULL,
	updated       BIGINT NOT NULL,  -- unix ms, the hub's clock: when last folded in
	PRIMARY KEY (agent, namespace, name, fold)
);
CREATE INDEX gitsync_events_seq ON gitsync_events(agent, namespace, name, seq);
CREATE INDEX gitsync_events_updated ON gitsync_events(updated);
CREATE TABLE sessions (
	id_hash  TEXT PRIMARY KEY,  -- hex sha256 of the session id, which only the cookie holds
	token_id BIGINT NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
	created  BIGINT NOT NULL,   -- unix ms
	expires  BIGINT NOT NULL    -- unix ms: created plus the TTL, never extended
);
CREATE INDEX sessions_expires ON sessions(expires);
CREATE INDEX sessions_created ON sessions(created);
CREATE INDEX sessions_token ON sessions(token_id);
`},
	// 7: each GitSync's repository identity (giturl.Key of its source
	// URL), indexed, so a push webhook finds the GitSyncs that follow the
	// pushed repository without reading every GitSync.
	{sql: `
ALTER TABLE gitsyncs ADD COLUMN repo_key TEXT NOT NULL DEFAULT '';
CREATE INDEX gitsyncs_repo_key ON gitsyncs(repo_key);
`, code: fillRepoKeys},
	// 8: the commit statuses to post (an outbox): one row per commit and
	// context with the latest state wanted, queued by whichever replica
	// stored the report, posted and deleted by the leader. A row stays
	// claimed while a leader posts it; a claim that outlives the post's
	// timeout is a dead leader's.
	{sql: `
CREATE TABLE status_outbox (
	sha         TEXT NOT NULL,
	context     TEXT NOT NULL,
	state       TEXT NOT NULL,               -- running, success, failed: the latest wanted
	repo_url    TEXT NOT NULL,
	target_url  TEXT NOT NULL DEFAULT '',
	description TEXT NOT NULL DEFAULT '',
	queued      BIGINT NOT NULL,             -- unix ms this state was queued
	attempts    INTEGER NOT NULL DEFAULT 0,  -- posts of this state that failed
	next_try    BIGINT NOT NULL DEFAULT 0,   -- unix ms, not before
	claimed_by  TEXT NOT NULL DEFAULT '',    -- the leader posting it, '' when none
	claimed     BIGINT NOT NULL DEFAULT 0,   -- unix ms of the claim
	PRIMARY KEY (sha, context)
);
CREATE INDEX status_outbox_next_try ON status_outbox(next_try);
CREATE INDEX status_outbox_queued ON status_outbox(queued);
`},
	// 9: "sync now" requests on their way to the replica that holds the
	// agent's stream (see syncnow.go): the NOTIFY that carries one may be
	// lost, the row is not. The holder deletes a row as it delivers it;
	// rows older than SyncNowKeep are dropped. SQLite (one hub) leaves it
	// empty.
	{sql: `
CREATE TABLE sync_now (
	id            {{id}},
	agent         TEXT NOT NULL,
	replica       TEXT NOT NULL DEFAULT '',  -- replicas.id it was addressed to
	namespace     TEXT NOT NULL DEFAULT '',  -- one GitSync's (the resync API), '' for every one of the repository
	name          TEXT NOT NULL DEFAULT '',
	repo_url      TEXT NOT NULL DEFAULT '',
	branch_or_tag TEXT NOT NULL DEFAULT '',
	reason        TEXT NOT NULL DEFAULT '',
	created       BIGINT NOT NULL            -- unix ms
);
CREATE INDEX sync_now_agent ON sync_now(agent);
CREATE INDEX sync_now_created ON sync_now(created);
`},
}

// fillRepoKeys fills migration 7's repo_key of the GitSyncs stored before
// it.
func fillRepoKeys(ctx context.Context, t tx) error {
	rows, err := t.QueryContext(ctx, `SELECT agent, namespace, name, source_url FROM gitsyncs`)
	if err != nil {
		return err
	}
	type row struct{ agent, namespace, name, key string }
	var all []row
	for rows.Next() {
		var r row
		var url string
		if err := rows.Scan(&r.agent, &r.namespace, &r.name, &url); err != nil {
			rows.Close()
			return err
		}
		r.key = giturl.Key(url)
		all = append(all, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range all {
		if _, err := t.ExecContext(ctx, `UPDATE gitsyncs SET repo_key = ? WHERE agent = ? AND namespace = ? AND name = ?`,
			r.key, r.agent, r.namespace, r.name); err != nil {
			return err
		}
	}
	return nil
}

// moveReportBlobs fills migration 3's columns and tables from the report
// blobs, then drops the blob column.
func moveReportBlobs(ctx context.Context, t tx) error {
	rows, err := t.QueryContext(ctx, `SELECT agent, namespace, name, report FROM gitsyncs WHERE report IS NOT NULL`)
	if err != nil {
		return err
	}
	type old struct {
		agent string
		r     *channelpb.SyncReport
	}
	var olds []old
	for rows.Next() {
		var agent, ns, name string
		var blob []byte
		if err := rows.Scan(&agent, &ns, &name, &blob); err != nil {
			rows.Close()
			return err
		}
		r := &channelpb.SyncReport{}
		if err := proto.Unmarshal(blob, r); err != nil {
			rows.Close()
			return fmt.Errorf("gitsync %s/%s/%s report: %w", agent, ns, name, err)
		}
		// The row's key wins over the blob's, should they differ.
		r.Namespace, r.Name = ns, name
		olds = append(olds, old{agent, r})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, o := range olds {
		kind, name := splitRef(o.r.GetRef())
		if _, err := t.ExecContext(ctx, `UPDATE gitsyncs SET ref_kind = ?, ref_name = ?, warning_events = ?, children_hash = ?
			WHERE agent = ? AND namespace = ? AND name = ?`,
			kind, name, o.r.GetWarningEvents(), hashChildren(o.r), o.agent, o.r.GetNamespace(), o.r.GetName()); err != nil {
			return err
		}
		if err := writeChildren(ctx, execer(t), o.agent, o.r); err != nil {
			return fmt.Errorf("gitsync %s/%s/%s: %w", o.agent, o.r.GetNamespace(), o.r.GetName(), err)
		}
	}
	_, err = t.ExecContext(ctx, `ALTER TABLE gitsyncs DROP COLUMN report`)
	return err
}

// splitRef splits the agent's "kind:name" ref ("branch:main").
func splitRef(ref string) (kind, name string) {
	kind, name, ok := strings.Cut(ref, ":")
	if !ok {
		return "", ref
	}
	return kind, name
}
