package store

import (
	"context"
	"testing"
	"time"
)

// Prune deletes history older than the cut and nothing live: the commit a
// GitSync runs keeps its revision and its commit status however old.
func TestPrune(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		clock := &fakeClock{t: time.Now().Add(-60 * 24 * time.Hour)}
		s.now = clock.now
		old := uint64(clock.now().UnixNano())
		ingest := func(agent, name string, v uint64, phase, rev string) {
			t.Helper()
			r := report(v, phase, "main@sha1:"+rev, "main@sha1:"+rev)
			r.Name = name
			if _, err := s.Ingest(ctx, agent, r); err != nil {
				t.Fatal(err)
			}
		}
		// 60 days ago: web runs A, then B (A superseded); api runs A and
		// stays on it; gone is deleted.
		ingest("prod", "web", old, "synced", shaA)
		ingest("prod", "web", old+1, "synced", shaB)
		ingest("prod", "api", old, "synced", shaA)
		ingest("prod", "gone", old, "synced", shaB)
		del := report(old+1, "synced", "", "")
		del.Name, del.Deleted = "gone", true
		if _, err := s.Ingest(ctx, "prod", del); err != nil {
			t.Fatal(err)
		}
		s.RecordPostedStatus(ctx, shaA, "tether/prod/apps/api", "success")
		const cOld = "cccccccccccccccccccccccccccccccccccccccc"
		s.RecordPostedStatus(ctx, cOld, "tether/prod/apps/x", "failure")
		clock.add(59 * 24 * time.Hour)
		s.RecordPostedStatus(ctx, cOld, "tether/prod/apps/y", "failure") // 1 day old
		ingest("prod", "web", uint64(clock.now().UnixNano()), "synced", shaB)

		p, err := s.Prune(ctx, clock.now().Add(-30*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		// web's A (superseded) and gone's B (superseded on delete).
		if p != (Pruned{Revisions: 2, CommitStatuses: 1, GitSyncs: 1}) {
			t.Errorf("Prune = %+v", p)
		}
		if ds, _ := s.History(ctx, "prod", "apps", "web", 10); len(ds) != 1 || ds[0].SHA != shaB {
			t.Errorf("web history: %+v", ds)
		}
		if ds, _ := s.History(ctx, "prod", "apps", "api", 10); len(ds) != 1 || ds[0].State != StateLive {
			t.Errorf("api's live commit, 60 days old, was pruned: %+v", ds)
		}
		if st, _ := s.PostedStatus(ctx, shaA, "tether/prod/apps/api"); st != "success" {
			t.Errorf("the status of a live commit was pruned: %q", st)
		}
		if st, _ := s.PostedStatus(ctx, cOld, "tether/prod/apps/x"); st != "" {
			t.Errorf("an old status stayed: %q", st)
		}
		if st, _ := s.PostedStatus(ctx, cOld, "tether/prod/apps/y"); st != "failure" {
			t.Errorf("a new status was pruned: %q", st)
		}
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM gitsyncs WHERE name = 'gone'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("deleted GitSync's state stayed: %d, %v", n, err)
		}
		if p, _ := s.Prune(ctx, clock.now().Add(-30*24*time.Hour)); p != (Pruned{}) {
			t.Errorf("second Prune deleted more: %+v", p)
		}
	})
}
