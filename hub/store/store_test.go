package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/internal/pgtest"
)

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func open(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func report(version uint64, phase, revision, attempted string) *channelpb.SyncReport {
	return &channelpb.SyncReport{
		Namespace: "apps", Name: "web", StateVersion: version,
		SourceUrl: "https://git.example.com/team/app.git", Ref: "branch:main",
		Revision: revision, AttemptedRevision: attempted, Phase: phase,
		Drift: &channelpb.DriftSummary{Count: 2},
	}
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// eachDB runs test on a new SQLite file and on a new PostgreSQL database:
// the store's suite is the same for both.
func eachDB(t *testing.T, test func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { test(t, filepath.Join(t.TempDir(), "hub.db")) })
	t.Run("postgres", func(t *testing.T) { test(t, pgtest.URL(t)) })
}

func TestMigrationsAreIdempotent(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		s := open(t, dsn)
		if _, err := s.CreateToken(context.Background(), KindAgent, "prod"); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s2 := open(t, dsn) // migrations run again: nothing changes, nothing lost
		v, err := s2.SchemaVersion(context.Background())
		if err != nil || v != len(migrations) {
			t.Fatalf("schema version %d, %v; want %d", v, err, len(migrations))
		}
		agents, err := s2.Agents(context.Background())
		if err != nil || len(agents) != 1 || agents[0].Name != "prod" {
			t.Fatalf("agents after reopen: %+v, %v", agents, err)
		}
		if s2.Dialect() != "sqlite" {
			return
		}
		var mode string
		if err := s2.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("journal_mode = %q, %v; want wal", mode, err)
		}
	})
}

// Two hubs starting at once on one PostgreSQL migrate it once: goose's
// advisory lock makes the second wait, then find nothing to do.
func TestConcurrentMigrations(t *testing.T) {
	dsn := pgtest.URL(t)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			s, err := Open(context.Background(), dsn)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestTokens(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		tok, err := s.CreateToken(ctx, KindAgent, "prod")
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) < 43 || strings.ContainsAny(tok, "+/=") {
			t.Errorf("token %q: want at least 32 bytes of base64url", tok)
		}
		var stored string
		if err := s.db.QueryRow(`SELECT hash FROM tokens`).Scan(&stored); err != nil || strings.Contains(stored, tok) {
			t.Fatalf("the token itself is stored: %q", stored)
		}
		if name, err := s.Authenticate(ctx, KindAgent, tok); err != nil || name != "prod" {
			t.Fatalf("Authenticate = %q, %v", name, err)
		}
		if _, err := s.Authenticate(ctx, KindAPI, tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("an agent token works as an API token: %v", err)
		}
		if _, err := s.Authenticate(ctx, KindAgent, tok+"x"); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("a wrong token authenticates: %v", err)
		}
		if _, err := s.Authenticate(ctx, KindAgent, ""); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("an empty token authenticates: %v", err)
		}
		tok2, _ := s.CreateToken(ctx, KindAgent, "prod")
		if n, err := s.RevokeTokens(ctx, KindAgent, "prod"); err != nil || n != 2 {
			t.Fatalf("RevokeTokens = %d, %v", n, err)
		}
		for _, k := range []string{tok, tok2} {
			if _, err := s.Authenticate(ctx, KindAgent, k); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("revoked token still authenticates: %v", err)
			}
		}
		if _, err := s.RevokeTokens(ctx, KindAgent, "prod"); !errors.Is(err, ErrNotFound) {
			t.Errorf("second revoke: %v, want ErrNotFound", err)
		}
	})
}

func TestLatestWins(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		steps := []struct {
			r      *channelpb.SyncReport
			stored bool
		}{
			{report(100, "synced", "main@sha1:"+shaA, "main@sha1:"+shaA), true},
			{report(100, "failed", "", ""), false}, // same version: already have it
			{report(50, "failed", "", ""), false},  // older: ignored
			{report(200, "progressing", "main@sha1:"+shaA, "main@sha1:"+shaB), true},
		}
		for i, st := range steps {
			stored, err := s.Ingest(ctx, "prod", st.r)
			if err != nil || stored != st.stored {
				t.Fatalf("step %d: stored = %v, %v; want %v", i, stored, err, st.stored)
			}
		}
		g, err := s.GitSync(ctx, "prod", "apps", "web")
		if err != nil {
			t.Fatal(err)
		}
		if g.StateVersion != 200 || g.Phase != "progressing" || g.DriftCount != 2 || g.AttemptedRevision != "main@sha1:"+shaB {
			t.Errorf("latest state = %+v", g)
		}
		if _, err := s.GitSync(ctx, "prod", "apps", "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown gitsync: %v", err)
		}
	})
}

func TestHistory(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		ingest := func(agent string, r *channelpb.SyncReport) {
			t.Helper()
			if _, err := s.Ingest(ctx, agent, r); err != nil {
				t.Fatal(err)
			}
		}
		states := func(sha string) string {
			t.Helper()
			ds, err := s.Commit(ctx, sha)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, d := range ds {
				out = append(out, d.Agent+"="+d.State)
			}
			return strings.Join(out, ",")
		}
		t0 := uint64(time.Now().Add(-time.Hour).UnixNano())
		ingest("prod", report(t0, "synced", "main@sha1:"+shaA, "main@sha1:"+shaA))
		ingest("staging", report(t0, "synced", "main@sha1:"+shaA, "main@sha1:"+shaA))
		ingest("staging", report(t0+1, "progressing", "main@sha1:"+shaA, "main@sha1:"+shaB))
		if got := states(shaA); got != "prod=live,staging=live" {
			t.Errorf("commit A: %s", got)
		}
		if got := states(shaB[:7]); got != "staging=applying" {
			t.Errorf("commit B: %s", got)
		}
		ingest("staging", report(t0+2, "synced", "main@sha1:"+shaB, "main@sha1:"+shaB))
		ingest("prod", report(t0+2, "failed", "main@sha1:"+shaA, "main@sha1:"+shaB))
		if got := states(shaA); got != "prod=live,staging=superseded" {
			t.Errorf("commit A after B: %s", got)
		}
		if got := states(shaB); got != "prod=failed,staging=live" {
			t.Errorf("commit B after B: %s", got)
		}
		ds, _ := s.Commit(ctx, shaB)
		if ds[1].FirstSeen.IsZero() || ds[1].FirstSeen.After(ds[1].LastSeen) || time.Since(ds[1].FirstSeen) < 50*time.Minute {
			t.Errorf("first/last seen from the agent's clock: %+v", ds[1])
		}
		del := report(t0+3, "synced", "", "")
		del.Deleted = true
		ingest("staging", del)
		if got := states(shaB); got != "prod=failed,staging=superseded" {
			t.Errorf("commit B after delete: %s", got)
		}
		if gs, _ := s.GitSyncs(ctx, ""); len(gs) != 1 || gs[0].Agent != "prod" {
			t.Errorf("deleted GitSync still listed: %+v", gs)
		}
		if _, err := s.Commit(ctx, "xyz"); err == nil {
			t.Error("a malformed sha is accepted")
		}
	})
}

func TestConcurrentIngest(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					r := report(uint64(i+1), "synced", "main@sha1:"+shaA, "")
					r.Name = fmt.Sprintf("gs-%d", w)
					if _, err := s.Ingest(ctx, "prod", r); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		gs, err := s.GitSyncs(ctx, "prod")
		if err != nil || len(gs) != 8 {
			t.Fatalf("gitsyncs: %d, %v", len(gs), err)
		}
		for _, g := range gs {
			if g.StateVersion != 50 {
				t.Errorf("%s: state version %d, want 50", g.Name, g.StateVersion)
			}
		}
	})
}

func TestPostedStatus(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		if st, err := s.PostedStatus(ctx, shaA, "tether/prod/apps/web"); err != nil || st != "" {
			t.Fatalf("PostedStatus before = %q, %v", st, err)
		}
		s.RecordPostedStatus(ctx, shaA, "tether/prod/apps/web", "running")
		s.RecordPostedStatus(ctx, shaA, "tether/prod/apps/web", "success")
		if st, err := s.PostedStatus(ctx, shaA, "tether/prod/apps/web"); err != nil || st != "success" {
			t.Fatalf("PostedStatus after = %q, %v", st, err)
		}
	})
}

// What the hub reads of a report comes back from its columns and child
// tables, in the report's order, in the list and in the single read; a
// newer report replaces the children, an older one leaves them.
func TestReportColumns(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		r := report(1, "drifted", "main@sha1:"+shaA, "main@sha1:"+shaA)
		r.Ref = "tag:v1.2.0"
		r.WarningEvents = 5
		r.Conditions = []*channelpb.Condition{
			{Type: "Ready", Status: "True", Reason: "Synced", Message: "ok", LastTransitionUnixMs: 1700000000000},
			{Type: "Ready", Status: "False"}, // a repeated type is kept, not refused
		}
		r.Namespaces = []*channelpb.NamespaceCount{{Namespace: "z", Objects: 2}, {Namespace: "a", Objects: 1}}
		r.Drift = &channelpb.DriftSummary{Count: 1, Objects: []*channelpb.DriftedObject{
			{Kind: "ConfigMap", Namespace: "apps", Name: "cfg", Paths: []string{".data.a", ".data.b"}, Deleted: true, DetectedUnixMs: 1700000000001},
		}}
		other := report(1, "synced", "main@sha1:"+shaA, "main@sha1:"+shaA)
		other.Name = "api"
		other.Conditions = []*channelpb.Condition{{Type: "Ready", Status: "True"}}
		for _, rep := range []*channelpb.SyncReport{r, other} {
			if _, err := s.Ingest(ctx, "prod", rep); err != nil {
				t.Fatal(err)
			}
		}
		want := GitSync{
			Agent: "prod", Namespace: "apps", Name: "web", StateVersion: 1, SourceURL: r.GetSourceUrl(),
			Ref: "tag:v1.2.0", RefKind: "tag", RefName: "v1.2.0", Revision: r.GetRevision(), AttemptedRevision: r.GetAttemptedRevision(),
			Phase: "drifted", DriftCount: 1, WarningEvents: 5,
			Conditions: []Condition{
				{Type: "Ready", Status: "True", Reason: "Synced", Message: "ok", LastTransition: time.UnixMilli(1700000000000).UTC()},
				{Type: "Ready", Status: "False"},
			},
			Namespaces: []NamespaceCount{{"z", 2}, {"a", 1}},
			Drifted: []DriftedObject{{Kind: "ConfigMap", Namespace: "apps", Name: "cfg", Paths: []string{".data.a", ".data.b"},
				Deleted: true, Detected: time.UnixMilli(1700000000001).UTC()}},
		}
		ignore := cmpopts.IgnoreFields(GitSync{}, "Updated")
		g, err := s.GitSync(ctx, "prod", "apps", "web")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, g, ignore); diff != "" {
			t.Errorf("GitSync (-want +got):\n%s", diff)
		}
		gs, err := s.GitSyncs(ctx, "prod")
		if err != nil || len(gs) != 2 {
			t.Fatalf("GitSyncs = %d, %v", len(gs), err)
		}
		if diff := cmp.Diff(want, gs[1], ignore); diff != "" {
			t.Errorf("GitSyncs[1] (-want +got):\n%s", diff)
		}
		if len(gs[0].Conditions) != 1 || len(gs[0].Drifted) != 0 {
			t.Errorf("api's children mixed with web's: %+v", gs[0])
		}
		older := report(0, "failed", "", "")
		if stored, _ := s.Ingest(ctx, "prod", older); stored {
			t.Fatal("an older report was stored")
		}
		newer := report(2, "synced", "main@sha1:"+shaA, "main@sha1:"+shaA)
		newer.Conditions = []*channelpb.Condition{{Type: "Ready", Status: "True", Reason: "Synced"}}
		if _, err := s.Ingest(ctx, "prod", newer); err != nil {
			t.Fatal(err)
		}
		g, _ = s.GitSync(ctx, "prod", "apps", "web")
		if len(g.Conditions) != 1 || g.Conditions[0].Reason != "Synced" || len(g.Namespaces) != 0 || len(g.Drifted) != 0 || g.WarningEvents != 0 {
			t.Errorf("after a newer report: %+v", g)
		}
		// Back to the first report's children: unchanged children are not
		// rewritten, changed ones are, whatever came between.
		again := proto.Clone(r).(*channelpb.SyncReport)
		again.StateVersion = 3
		if _, err := s.Ingest(ctx, "prod", again); err != nil {
			t.Fatal(err)
		}
		same := proto.Clone(again).(*channelpb.SyncReport)
		same.StateVersion = 4
		if _, err := s.Ingest(ctx, "prod", same); err != nil {
			t.Fatal(err)
		}
		g, _ = s.GitSync(ctx, "prod", "apps", "web")
		want.StateVersion = 4
		if diff := cmp.Diff(want, g, ignore); diff != "" {
			t.Errorf("back to the first children (-want +got):\n%s", diff)
		}
	})
}

func TestRedact(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"hub.db", "hub.db"},
		{"/var/lib/tether/hub.db", "/var/lib/tether/hub.db"},
		{"postgres://tether:pw@db:5432/hub", "postgres://tether:xxxxx@db:5432/hub"},
		{"postgresql://tether@db/hub?sslmode=require", "postgresql://tether@db/hub?sslmode=require"},
		{"postgres://db/hub?password=pw&user=tether", "postgres://db/hub?password=xxxxx&user=tether"},
	} {
		if got := Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// Lists come in bytewise order on both databases, whatever PostgreSQL's
// locale (internal/pgtest makes it en-US, where "beta-1" and "Beta" sort
// otherwise).
func TestOrderIsBytewise(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		names := []string{"beta1", "Zeta", "beta-1", "alpha", "beta_2", "Beta"}
		for _, n := range names {
			if _, err := s.CreateToken(ctx, KindAgent, n); err != nil {
				t.Fatal(err)
			}
		}
		as, err := s.Agents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range as {
			got = append(got, a.Name)
		}
		want := slices.Clone(names)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("agents in order %q, want %q", got, want)
		}
	})
}
