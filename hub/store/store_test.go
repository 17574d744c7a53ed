package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tether.dev/tether/channel/channelpb"
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

func TestMigrationsAreIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hub.db")
	s := open(t, path)
	if _, err := s.CreateToken(context.Background(), KindAgent, "prod"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := open(t, path) // migrations run again: nothing changes, nothing lost
	v, err := s2.SchemaVersion(context.Background())
	if err != nil || v != len(migrations) {
		t.Fatalf("schema version %d, %v; want %d", v, err, len(migrations))
	}
	agents, err := s2.Agents(context.Background())
	if err != nil || len(agents) != 1 || agents[0].Name != "prod" {
		t.Fatalf("agents after reopen: %+v, %v", agents, err)
	}
	var mode string
	if err := s2.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
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
}

func TestLatestWins(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
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
	if g.StateVersion != 200 || g.Phase != "progressing" || g.DriftCount != 2 || g.Report.GetAttemptedRevision() != "main@sha1:"+shaB {
		t.Errorf("latest state = %+v", g)
	}
	if _, err := s.GitSync(ctx, "prod", "apps", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown gitsync: %v", err)
	}
}

func TestHistory(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
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
}

func TestConcurrentIngest(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
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
}

func TestPostedStatus(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
	if st, err := s.PostedStatus(ctx, shaA, "tether/prod/apps/web"); err != nil || st != "" {
		t.Fatalf("PostedStatus before = %q, %v", st, err)
	}
	s.RecordPostedStatus(ctx, shaA, "tether/prod/apps/web", "running")
	s.RecordPostedStatus(ctx, shaA, "tether/prod/apps/web", "success")
	if st, err := s.PostedStatus(ctx, shaA, "tether/prod/apps/web"); err != nil || st != "success" {
		t.Fatalf("PostedStatus after = %q, %v", st, err)
	}
}
