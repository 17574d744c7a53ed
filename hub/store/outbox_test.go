package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"tether.dev/tether/internal/pgtest"
)

func queued(sha, context, state string) QueuedStatus {
	return QueuedStatus{SHA: sha, Context: context, State: state, RepoURL: "https://git.example.com/team/app.git",
		TargetURL: "https://hub.example.com/#prod/apps/web", Description: state + " on prod"}
}

// outbox lists the rows as "sha[:1] context state attempts claimedBy".
func outbox(t *testing.T, s *Store) []string {
	t.Helper()
	qs, err := s.QueuedStatuses(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, q := range qs {
		out = append(out, fmt.Sprintf("%s %s %s %d %s", q.SHA[:1], q.Context, q.State, q.Attempts, q.ClaimedBy))
	}
	return out
}

func mustQueue(t *testing.T, s *Store, q QueuedStatus, want bool) {
	t.Helper()
	got, err := s.QueueStatus(context.Background(), q)
	if err != nil || got != want {
		t.Fatalf("QueueStatus(%s %s) = %v, %v; want %v", q.Context, q.State, got, err, want)
	}
}

func mustClaim(t *testing.T, s *Store, holder string, stale time.Duration, want int) []QueuedStatus {
	t.Helper()
	qs, err := s.ClaimStatuses(context.Background(), holder, stale, 10)
	if err != nil || len(qs) != want {
		t.Fatalf("ClaimStatuses(%s) = %+v, %v; want %d rows", holder, qs, err, want)
	}
	return qs
}

// The outbox keeps the latest state per commit and context; a claim is
// one hub's; a post finishes the row unless a newer state came meanwhile;
// a state already posted is not queued again.
func TestOutbox(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		clock := &fakeClock{t: time.Now()}
		s := open(t, dsn)
		s.now = clock.now
		const stale = time.Minute

		mustQueue(t, s, queued(shaA, "c", "running"), true)
		mustQueue(t, s, queued(shaA, "c", "running"), false) // no new work
		q := mustClaim(t, s, "hub-a", stale, 1)[0]
		if q.State != "running" || q.ClaimedBy != "" || q.RepoURL == "" || q.TargetURL == "" || q.Description != "running on prod" {
			t.Fatalf("claimed %+v", q)
		}
		mustClaim(t, s, "hub-b", stale, 0) // a holds it

		// A newer state while a posts: it replaces the wanted state, the
		// claim stays; a's post is recorded and the row stays for success.
		mustQueue(t, s, queued(shaA, "c", "success"), true)
		if err := s.StatusPosted(ctx, "hub-a", q); err != nil {
			t.Fatal(err)
		}
		if st, _ := s.PostedStatus(ctx, shaA, "c"); st != "running" {
			t.Fatalf("posted %q, want running", st)
		}
		if got := fmt.Sprint(outbox(t, s)); got != "[a c success 0 ]" {
			t.Fatalf("outbox after a newer state: %s", got)
		}
		q = mustClaim(t, s, "hub-b", stale, 1)[0]
		if q.State != "success" {
			t.Fatalf("claimed %+v", q)
		}
		if err := s.StatusPosted(ctx, "hub-b", q); err != nil {
			t.Fatal(err)
		}
		if got := outbox(t, s); len(got) != 0 {
			t.Fatalf("outbox after the post: %v", got)
		}
		mustQueue(t, s, queued(shaA, "c", "success"), false) // posted already

		// Latest wins over a pending state too: running queued, then the
		// posted success wanted again: nothing is left to post.
		mustQueue(t, s, queued(shaA, "c", "running"), true)
		mustQueue(t, s, queued(shaA, "c", "success"), false)
		if got := outbox(t, s); len(got) != 0 {
			t.Fatalf("outbox after the posted state came back: %v", got)
		}

		// The posted state wanted again while a leader posts another: the
		// row follows it, so the host ends on the state wanted last.
		mustQueue(t, s, queued(shaA, "c", "running"), true)
		q = mustClaim(t, s, "hub-a", stale, 1)[0]
		mustQueue(t, s, queued(shaA, "c", "success"), true)
		if err := s.StatusPosted(ctx, "hub-a", q); err != nil {
			t.Fatal(err)
		}
		q = mustClaim(t, s, "hub-a", stale, 1)[0]
		if q.State != "success" {
			t.Fatalf("after running was posted: %+v, want success to follow", q)
		}
		if err := s.StatusPosted(ctx, "hub-a", q); err != nil {
			t.Fatal(err)
		}

		// A retry waits its time; the next claim knows the last one was
		// unsure; a newer state is due at once, attempts start over.
		mustQueue(t, s, queued(shaB, "c", "failed"), true)
		q = mustClaim(t, s, "hub-a", stale, 1)[0]
		if err := s.RetryStatus(ctx, "hub-a", q, clock.now().Add(10*time.Second), true); err != nil {
			t.Fatal(err)
		}
		mustClaim(t, s, "hub-a", stale, 0)
		clock.add(11 * time.Second)
		q = mustClaim(t, s, "hub-b", stale, 1)[0]
		if q.Attempts != 1 || q.ClaimedBy != "hub-a" {
			t.Fatalf("after a retry: %+v; want attempts 1, claimed before by hub-a", q)
		}
		if err := s.RetryStatus(ctx, "hub-b", q, clock.now().Add(time.Hour), false); err != nil {
			t.Fatal(err)
		}
		mustQueue(t, s, queued(shaB, "c", "success"), true)
		q = mustClaim(t, s, "hub-b", stale, 1)[0]
		if q.Attempts != 0 || q.State != "success" || q.ClaimedBy != "" {
			t.Fatalf("a newer state after retries: %+v", q)
		}
		// Dropped (refused for good): gone, nothing recorded as posted.
		if err := s.DropStatus(ctx, "hub-b", q); err != nil {
			t.Fatal(err)
		}
		if st, _ := s.PostedStatus(ctx, shaB, "c"); st != "" || len(outbox(t, s)) != 0 {
			t.Fatalf("after a drop: posted %q, outbox %v", st, outbox(t, s))
		}

		// A claim that outlives stale is a dead hub's: another takes the
		// row over and learns who had it.
		mustQueue(t, s, queued(shaB, "d", "running"), true)
		mustClaim(t, s, "hub-a", stale, 1)
		clock.add(stale / 2)
		mustClaim(t, s, "hub-b", stale, 0)
		clock.add(stale)
		q = mustClaim(t, s, "hub-b", stale, 1)[0]
		if q.ClaimedBy != "hub-a" {
			t.Fatalf("taken over: %+v, want claimed before by hub-a", q)
		}
		// The dead hub's late finish does not release b's claim.
		if err := s.RetryStatus(ctx, "hub-a", q, clock.now(), false); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(outbox(t, s)); got != "[b d running 0 hub-b]" {
			t.Fatalf("outbox after a stale finish: %s", got)
		}

		// Retention drops what waited longer than it.
		clock.add(48 * time.Hour)
		p, err := s.Prune(ctx, clock.now().Add(-24*time.Hour))
		if err != nil || p.QueuedStatuses != 1 || len(outbox(t, s)) != 0 {
			t.Fatalf("prune: %+v, %v; outbox %v", p, err, outbox(t, s))
		}
	})
}

// A report's status is queued in the transaction that stores it, and
// only then: the same report again (resent after a reconnect) queues
// nothing, nor does a status already posted.
func TestIngestQueued(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		q := queued(shaA, "tether/prod/apps/web", "success")
		stored, isQueued, err := s.IngestQueued(ctx, "prod", report(1, "synced", shaA, shaA), &q)
		if err != nil || !stored || !isQueued {
			t.Fatalf("first report: stored %v, queued %v, %v", stored, isQueued, err)
		}
		stored, isQueued, err = s.IngestQueued(ctx, "prod", report(1, "synced", shaA, shaA), &q)
		if err != nil || stored || isQueued {
			t.Fatalf("the same report again: stored %v, queued %v, %v", stored, isQueued, err)
		}
		if got := fmt.Sprint(outbox(t, s)); got != "[a tether/prod/apps/web success 0 ]" {
			t.Fatalf("outbox: %s", got)
		}
		c := mustClaim(t, s, "hub-a", time.Minute, 1)[0]
		if err := s.StatusPosted(ctx, "hub-a", c); err != nil {
			t.Fatal(err)
		}
		stored, isQueued, err = s.IngestQueued(ctx, "prod", report(2, "synced", shaA, shaA), &q)
		if err != nil || !stored || isQueued {
			t.Fatalf("a newer report of a posted state: stored %v, queued %v, %v", stored, isQueued, err)
		}
	})
}

// Two hubs on one PostgreSQL claiming at once never claim one row both:
// in each round both read the whole outbox at the same moment and race
// for every row.
func TestOutboxClaimRace(t *testing.T) {
	dsn := pgtest.URL(t)
	stores := []*Store{open(t, dsn), open(t, dsn)}
	const n, rounds = 40, 5
	won := [2]int{}
	for round := range rounds {
		for i := range n {
			mustQueue(t, stores[0], queued(shaA, fmt.Sprintf("r%d-c%02d", round, i), "running"), true)
		}
		start := make(chan struct{})
		got := [2][]QueuedStatus{}
		var wg sync.WaitGroup
		for i, s := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				qs, err := s.ClaimStatuses(context.Background(), fmt.Sprintf("hub-%d", i), time.Minute, n)
				if err != nil {
					t.Error(err)
				}
				got[i] = qs
			}()
		}
		close(start)
		wg.Wait()
		claims := map[string]int{}
		for i, qs := range got {
			won[i] += len(qs)
			for _, q := range qs {
				claims[q.Context]++
			}
		}
		for c, k := range claims {
			if k != 1 {
				t.Errorf("round %d: row %s claimed %d times", round, c, k)
			}
		}
		if len(claims) != n {
			t.Errorf("round %d: %d rows claimed, want %d", round, len(claims), n)
		}
		for _, qs := range got {
			for _, q := range qs {
				if err := stores[0].DropStatus(context.Background(), "", q); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	t.Logf("rows won by each hub: %v", won)
}
