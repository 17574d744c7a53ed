package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"tether.dev/tether/channel/channelpb"
)

// legacyMigrations are the migrations as the hand-written runner of
// earlier releases shipped them, verbatim, to make databases as those
// releases did.
var legacyMigrations = []string{
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

// legacyOpen makes a SQLite database at path the way an earlier release
// did: its runner, its first n migrations.
func legacyOpen(t *testing.T, path string, n int) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for i, m := range legacyMigrations[:n] {
		if _, err := db.Exec(m); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`INSERT INTO schema_migrations(version, applied) VALUES (?, strftime('%s','now')*1000)`, i+1); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// A database of the first schema (before projects) upgrades in place, and
// its API tokens keep working.
func TestUpgradeFromFirstSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	db := legacyOpen(t, path, 1)
	h := hashToken("old-api-token")
	if _, err := db.Exec(`INSERT INTO tokens(kind, subject, lookup, hash, created) VALUES ('api', 'ops', ?, ?, 1)`, h[:16], h); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := open(t, path)
	if v, _ := s.SchemaVersion(ctx); v != len(migrations) {
		t.Fatalf("schema version %d, want %d", v, len(migrations))
	}
	if got, err := s.AuthenticateClient(ctx, "old-api-token"); err != nil || got.Kind != KindAPI || got.Subject != "ops" {
		t.Fatalf("old API token after upgrade: %+v, %v", got, err)
	}
	if err := s.CreateProject(ctx, "shop", []string{"https://git.example.com/shop/web"}); err != nil {
		t.Fatal(err)
	}
}

// A database of the last release of the hand-written runner (projects, a
// report stored as a protobuf blob) upgrades in place under goose: the
// report's conditions, namespaces, drift and Warning count land in their
// columns, tokens, projects and history stay, and the blob column goes.
func TestUpgradeFromLegacyRunner(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	db := legacyOpen(t, path, 2)
	r := report(7, "drifted", "main@sha1:"+shaA, "main@sha1:"+shaA)
	r.WarningEvents = 3
	r.Conditions = []*channelpb.Condition{
		{Type: "Ready", Status: "True", Reason: "Synced", Message: "applied", LastTransitionUnixMs: 1700000000000},
		{Type: "Drifted", Status: "True", Reason: "Drift"},
	}
	r.Namespaces = []*channelpb.NamespaceCount{{Namespace: "apps", Objects: 4}, {Namespace: "db", Objects: 1}}
	r.Drift = &channelpb.DriftSummary{Count: 1, Objects: []*channelpb.DriftedObject{
		{Group: "apps", Kind: "Deployment", Namespace: "apps", Name: "web", Paths: []string{".spec.replicas", ".metadata.labels.tier"}, Managers: []string{"kubectl-edit"}},
	}}
	blob, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO agents(name, connected, last_seen, created) VALUES ('prod', 0, 5, 1)`, nil},
		{`INSERT INTO gitsyncs(agent, namespace, name, state_version, source_url, ref, revision, attempted_revision, phase, drift_count, updated, report)
			VALUES ('prod', 'apps', 'web', 7, ?, 'branch:main', ?, ?, 'drifted', 1, 9, ?)`,
			[]any{r.GetSourceUrl(), r.GetRevision(), r.GetAttemptedRevision(), blob}},
		{`INSERT INTO revisions(sha, agent, namespace, name, repo_url, revision, state, first_seen, last_seen)
			VALUES (?, 'prod', 'apps', 'web', '', '', 'live', 1, 2)`, []any{shaA}},
		{`INSERT INTO projects(name, created) VALUES ('shop', 1)`, nil},
		{`INSERT INTO project_repos(project, repo_key, url) VALUES ('shop', 'git.example.com/team/app', 'https://git.example.com/team/app.git')`, nil},
		{`INSERT INTO tokens(kind, subject, lookup, hash, created, actions) VALUES ('project', 'shop', ?, ?, 1, 'read,resync')`,
			[]any{hashToken("shop-token")[:16], hashToken("shop-token")}},
	} {
		if _, err := db.Exec(q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	db.Close()

	s := open(t, path)
	if v, _ := s.SchemaVersion(ctx); v != len(migrations) {
		t.Fatalf("schema version %d, want %d", v, len(migrations))
	}
	g, err := s.GitSync(ctx, "prod", "apps", "web")
	if err != nil {
		t.Fatal(err)
	}
	want := GitSync{
		Agent: "prod", Namespace: "apps", Name: "web", StateVersion: 7, SourceURL: r.GetSourceUrl(),
		Ref: "branch:main", RefKind: "branch", RefName: "main", Revision: r.GetRevision(), AttemptedRevision: r.GetAttemptedRevision(),
		Phase: "drifted", DriftCount: 1, WarningEvents: 3, Updated: fromMS(9),
		Conditions: []Condition{
			{Type: "Ready", Status: "True", Reason: "Synced", Message: "applied", LastTransition: time.UnixMilli(1700000000000).UTC()},
			{Type: "Drifted", Status: "True", Reason: "Drift"},
		},
		Namespaces: []NamespaceCount{{"apps", 4}, {"db", 1}},
		Drifted: []DriftedObject{{Group: "apps", Kind: "Deployment", Namespace: "apps", Name: "web",
			Paths: []string{".spec.replicas", ".metadata.labels.tier"}, Managers: []string{"kubectl-edit"}}},
	}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Errorf("upgraded GitSync (-want +got):\n%s", diff)
	}
	if ds, err := s.Commit(ctx, shaA); err != nil || len(ds) != 1 || ds[0].State != StateLive {
		t.Errorf("history after upgrade: %+v, %v", ds, err)
	}
	if tok, err := s.AuthenticateClient(ctx, "shop-token"); err != nil || tok.Subject != "shop" || len(tok.Actions) != 2 {
		t.Errorf("project token after upgrade: %+v, %v", tok, err)
	}
	if p, err := s.Project(ctx, "shop"); err != nil || len(p.Repos) != 1 {
		t.Errorf("project after upgrade: %+v, %v", p, err)
	}
	var blobs int
	if err := s.db.QueryRow(`SELECT count(*) FROM pragma_table_info('gitsyncs') WHERE name = 'report'`).Scan(&blobs); err != nil || blobs != 0 {
		t.Errorf("report column still there: %d, %v", blobs, err)
	}
	if legacy, err := sqliteTableExists(ctx, s.db, legacyTable); err != nil || legacy {
		t.Errorf("%s still there: %v, %v", legacyTable, legacy, err)
	}
	// A new report after the upgrade replaces the moved rows.
	r2 := report(8, "synced", "main@sha1:"+shaB, "main@sha1:"+shaB)
	if stored, err := s.Ingest(ctx, "prod", r2); err != nil || !stored {
		t.Fatalf("ingest after upgrade: %v, %v", stored, err)
	}
	if g, _ := s.GitSync(ctx, "prod", "apps", "web"); len(g.Conditions)+len(g.Namespaces)+len(g.Drifted) != 0 || g.Phase != "synced" {
		t.Errorf("after a new report: %+v", g)
	}
}
