package store

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

func warning(gs, object, message string, count int64, first, last int64) Event {
	return Event{GitSyncNamespace: "apps", GitSyncName: gs, Kind: "Pod", Namespace: "shop", Name: object,
		Reason: "BackOff", Message: message, Count: count, First: time.UnixMilli(first).UTC(), Last: time.UnixMilli(last).UTC()}
}

func mustAddEvents(t *testing.T, s *Store, agent string, want int, evs ...Event) {
	t.Helper()
	kept, err := s.AddEvents(context.Background(), agent, evs)
	if err != nil || kept != want {
		t.Fatalf("AddEvents = %d, %v; want %d kept", kept, err, want)
	}
}

func eventNames(t *testing.T, s *Store, agent, name string) []string {
	t.Helper()
	evs, err := s.Events(context.Background(), agent, "apps", name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s×%d", e.Name, e.Count))
	}
	return out
}

// TestEvents: the same object, reason and message fold into one row that
// moves to the newest place (counts add up, first is the earliest, last
// the latest), in a batch and across batches; a GitSync keeps its newest
// EventsPerGitSync; events of a GitSync never reported, of another agent's,
// or of a deleted one are dropped; DeleteEvents forgets them.
func TestEvents(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		for _, name := range []string{"web", "api"} {
			r := report(1, "synced", "", "")
			r.Name = name
			if _, err := s.Ingest(ctx, "prod", r); err != nil {
				t.Fatal(err)
			}
		}
		mustAddEvents(t, s, "prod", 3,
			warning("web", "web-1", "Back-off", 1, 5000, 6000),
			warning("web", "web-2", "other", 1, 1000, 1000),
			warning("web", "web-1", "Back-off", 2, 4000, 5500)) // folds, at its later place
		mustAddEvents(t, s, "prod", 2, warning("web", "web-2", "other", 4, 2000, 9000), warning("api", "api-1", "x", 1, 0, 0))
		if got := strings.Join(eventNames(t, s, "prod", "web"), " "); got != "web-2×5 web-1×3" {
			t.Fatalf("web's events: %s; want web-2 (folded, newest) then web-1", got)
		}
		evs, _ := s.Events(ctx, "prod", "apps", "web")
		if e := evs[0]; e.First != time.UnixMilli(1000).UTC() || e.Last != time.UnixMilli(9000).UTC() || e.Kind != "Pod" ||
			e.Namespace != "shop" || e.Reason != "BackOff" || e.Message != "other" {
			t.Errorf("folded event %+v", e)
		}
		if evs[1].First != time.UnixMilli(4000).UTC() || evs[1].Last != time.UnixMilli(6000).UTC() {
			t.Errorf("folded in a batch %+v", evs[1])
		}
		if evs, _ := s.Events(ctx, "prod", "apps", "api"); len(evs) != 1 || !evs[0].First.Equal(time.UnixMilli(0)) {
			t.Errorf("api's events %+v", evs)
		}
		// Another message, reason or object is another event.
		e := warning("web", "web-2", "other", 1, 1000, 1000)
		e.Reason = "Failed"
		mustAddEvents(t, s, "prod", 1, e)
		if n := len(eventNames(t, s, "prod", "web")); n != 3 {
			t.Errorf("a new reason folded into an old event: %d events", n)
		}

		// A count cannot overflow.
		mustAddEvents(t, s, "prod", 2, warning("api", "api-1", "x", math.MaxInt64-1, 0, 0), warning("api", "api-1", "x", 5, 0, 0))
		mustAddEvents(t, s, "prod", 1, warning("api", "api-1", "x", math.MaxInt64, 0, 0))
		if evs, _ := s.Events(ctx, "prod", "apps", "api"); len(evs) != 1 || evs[0].Count != math.MaxInt64 {
			t.Errorf("a huge count: %+v", evs)
		}

		// Unknown GitSyncs, and another agent's GitSync of the same name.
		mustAddEvents(t, s, "prod", 1, warning("ghost", "x", "y", 1, 0, 0), warning("web", "web-9", "z", 1, 0, 0))
		mustAddEvents(t, s, "other", 0, warning("web", "x", "y", 1, 0, 0))
		if got := eventNames(t, s, "prod", "ghost"); len(got) != 0 {
			t.Errorf("events of a GitSync never reported: %v", got)
		}
		if got := eventNames(t, s, "other", "web"); len(got) != 0 {
			t.Errorf("events kept for another agent's GitSync: %v", got)
		}

		// The newest EventsPerGitSync stay, in one batch or many.
		var batch []Event
		for i := range 2 * EventsPerGitSync {
			batch = append(batch, warning("web", fmt.Sprintf("p%d", i), "m", 1, 0, 0))
		}
		mustAddEvents(t, s, "prod", len(batch), batch...)
		got := eventNames(t, s, "prod", "web")
		if len(got) != EventsPerGitSync || got[0] != fmt.Sprintf("p%d×1", 2*EventsPerGitSync-1) || got[len(got)-1] != fmt.Sprintf("p%d×1", EventsPerGitSync) {
			t.Fatalf("%d events, newest %s, oldest %s", len(got), got[0], got[len(got)-1])
		}
		for i := range 10 {
			mustAddEvents(t, s, "prod", 1, warning("web", fmt.Sprintf("q%d", i), "m", 1, 0, 0))
		}
		var rows int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM gitsync_events WHERE name = 'web'`).Scan(&rows); err != nil || rows != EventsPerGitSync {
			t.Errorf("%d rows of web's events in the database, %v; want %d", rows, err, EventsPerGitSync)
		}
		if got := eventNames(t, s, "prod", "web"); got[0] != "q9×1" || got[10] != fmt.Sprintf("p%d×1", 2*EventsPerGitSync-1) {
			t.Errorf("after 10 more: newest %s, 11th %s", got[0], got[10])
		}

		// A deleted GitSync drops what is sent for it; DeleteEvents (the
		// hub calls it on the deletion) forgets the rest.
		del := report(2, "synced", "", "")
		del.Deleted = true
		if _, err := s.Ingest(ctx, "prod", del); err != nil {
			t.Fatal(err)
		}
		mustAddEvents(t, s, "prod", 0, warning("web", "late", "m", 1, 0, 0))
		if err := s.DeleteEvents(ctx, "prod", "apps", "web"); err != nil {
			t.Fatal(err)
		}
		if got := eventNames(t, s, "prod", "web"); len(got) != 0 {
			t.Errorf("a deleted GitSync keeps events: %v", got)
		}
		if got := eventNames(t, s, "prod", "api"); len(got) != 1 {
			t.Errorf("another GitSync's events went too: %v", got)
		}
	})
}

// TestEventsConcurrent: writers of one GitSync's events at once (two hubs
// given batches at the same moment) neither fail nor lose the order: the
// GitSync keeps EventsPerGitSync rows, each at its own place.
func TestEventsConcurrent(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		a, b := open(t, dsn), open(t, dsn)
		for _, name := range []string{"web", "api"} {
			r := report(1, "synced", "", "")
			r.Name = name
			if _, err := a.Ingest(ctx, "prod", r); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for w := range 4 {
			s := []*Store{a, b}[w%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					// Both GitSyncs, in opposite orders, and a shared
					// event every writer folds into.
					batch := []Event{warning("web", "shared", "m", 1, 0, 0)}
					for j := range 10 {
						batch = append(batch, warning("web", fmt.Sprintf("w%d-%d-%d", w, i, j), "m", 1, 0, 0),
							warning("api", fmt.Sprintf("w%d-%d-%d", w, i, j), "m", 1, 0, 0))
					}
					if w%2 == 1 {
						batch[0], batch[len(batch)-1] = batch[len(batch)-1], batch[0]
					}
					if _, err := s.AddEvents(ctx, "prod", batch); err != nil {
						errs <- err
						return
					}
					// Every committed state has each event at its own
					// place.
					var n, seqs int
					if err := s.db.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT seq) FROM gitsync_events WHERE name = 'web'`).Scan(&n, &seqs); err != nil {
						errs <- err
						return
					}
					if n != seqs {
						errs <- fmt.Errorf("web: %d events at %d places", n, seqs)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for _, name := range []string{"web", "api"} {
			var n, seqs int
			if err := a.db.QueryRowContext(ctx, `SELECT count(*), count(DISTINCT seq) FROM gitsync_events WHERE name = ?`, name).Scan(&n, &seqs); err != nil {
				t.Fatal(err)
			}
			if n != EventsPerGitSync || seqs != n {
				t.Errorf("%s: %d events with %d places; want %d, each its own", name, n, seqs, EventsPerGitSync)
			}
		}
	})
}

// TestEventsFlood: 10,000 distinct events of one GitSync, in the channel's
// batches of 100, and as many of GitSyncs the store never had: the store
// keeps 50 rows. It logs how long the flood took (indicative: the machine
// is shared).
func TestEventsFlood(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		if _, err := s.Ingest(ctx, "prod", report(1, "synced", "", "")); err != nil {
			t.Fatal(err)
		}
		msg := strings.Repeat("m", 1000)
		start := time.Now()
		for i := 0; i < 10000; i += 100 {
			var known, unknown []Event
			for j := range 100 {
				known = append(known, warning("web", fmt.Sprintf("web-%d", i+j), msg+fmt.Sprint(i+j), 1, 0, 0))
				unknown = append(unknown, warning(fmt.Sprintf("ghost%d", i+j), "x", msg, 1, 0, 0))
			}
			mustAddEvents(t, s, "prod", 100, known...)
			mustAddEvents(t, s, "prod", 0, unknown...)
		}
		took := time.Since(start)
		var rows int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM gitsync_events`).Scan(&rows); err != nil || rows != EventsPerGitSync {
			t.Fatalf("%d event rows after the flood, %v; want %d", rows, err, EventsPerGitSync)
		}
		if got := eventNames(t, s, "prod", "web"); got[0] != "web-9999×1" {
			t.Errorf("newest %s", got[0])
		}
		t.Logf("%s: 10,000 events of a known GitSync and 10,000 of unknown ones, in batches of 100: %v (%v a batch)",
			s.Dialect(), took.Round(time.Millisecond), (took / 200).Round(time.Microsecond))
	})
}

// TestPruneEvents: retention deletes events last sent before the cut,
// and those of a GitSync that is gone, and keeps the others.
func TestPruneEvents(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		clock := &fakeClock{t: time.Now().Add(-60 * 24 * time.Hour)}
		s.now = clock.now
		for _, name := range []string{"web", "api", "gone"} {
			r := report(1, "synced", "", "")
			r.Name = name
			if _, err := s.Ingest(ctx, "prod", r); err != nil {
				t.Fatal(err)
			}
		}
		mustAddEvents(t, s, "prod", 4, warning("web", "old", "m", 1, 0, 0), warning("api", "again", "m", 1, 0, 0),
			warning("gone", "x", "m", 1, 0, 0), warning("web", "gone-too", "m", 1, 0, 0))
		clock.add(59 * 24 * time.Hour)
		// api's event is sent again: it is new. gone is deleted, and
		// DeleteEvents missed (the hub stopped in between).
		mustAddEvents(t, s, "prod", 2, warning("api", "again", "m", 1, 0, 0), warning("gone", "y", "m", 1, 0, 0))
		del := report(2, "synced", "", "")
		del.Name, del.Deleted = "gone", true
		if _, err := s.Ingest(ctx, "prod", del); err != nil {
			t.Fatal(err)
		}
		p, err := s.Prune(ctx, clock.now().Add(-30*24*time.Hour))
		if err != nil || p.Events != 4 {
			t.Fatalf("Prune = %+v, %v; want 4 events (web's 2 old, gone's 2)", p, err)
		}
		if got := eventNames(t, s, "prod", "api"); len(got) != 1 || got[0] != "again×2" {
			t.Errorf("api's events after retention: %v", got)
		}
		if n := count(t, s, `SELECT count(*) FROM gitsync_events`); n != 1 {
			t.Errorf("%d event rows left; want api's", n)
		}
	})
}
