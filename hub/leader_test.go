package hub

import (
	"context"
	"os"
	"testing"
	"time"

	"tether.dev/tether/hub/status"
	"tether.dev/tether/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Two hubs on one PostgreSQL: the first leads and alone queues commit
// statuses; when it closes, the other leads at its next renewal.
func TestLeaderOnPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.URL(t)
	host, err := status.NewGitLab("https://gitlab.example.com", "tok")
	if err != nil {
		t.Fatal(err)
	}
	opt := Options{DB: dsn, GitHosts: []status.Host{host}, LeaseTTL: time.Hour}
	opt.HubID = "hub-a"
	a, _, _ := newHub(t, opt)
	opt.HubID = "hub-b"
	b, _, _ := newHub(t, opt)
	if !a.Leading() || b.Leading() {
		t.Fatalf("leading: a %v, b %v; want a only", a.Leading(), b.Leading())
	}
	st := status.Status{RepoURL: "https://gitlab.example.com/team/app.git", SHA: shaA, Context: "tether/prod/apps/web", State: status.Running}
	if b.poster.Enqueue(st) {
		t.Error("a hub that does not lead queued a commit status")
	}
	b.leaderStep(ctx, time.Now())
	if b.Leading() {
		t.Fatal("b took the lease a holds")
	}
	a.Close() // releases the lease
	b.leaderStep(ctx, time.Now())
	if !b.Leading() {
		t.Fatal("b does not lead after a closed")
	}
	if !b.poster.Enqueue(st) {
		t.Error("the leader did not queue a commit status")
	}
}

// The leader deletes history older than the retention, and keeps what is
// live.
func TestRetention(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newHub(t, Options{Retention: 30 * 24 * time.Hour})
	old := uint64(time.Now().Add(-60 * 24 * time.Hour).UnixNano())
	mustReport(t, s, "prod", rep("web", old, "synced", shaA, shaA))
	mustReport(t, s, "prod", rep("web", old+1, "synced", shaB, shaB)) // A superseded 60 days ago
	if ds, _ := s.store.History(ctx, "prod", "apps", "web", 10); len(ds) != 2 {
		t.Fatalf("history before retention: %+v", ds)
	}
	s.leaderStep(ctx, time.Now().Add(pruneEvery)) // the next prune is due
	ds, err := s.store.History(ctx, "prod", "apps", "web", 10)
	if err != nil || len(ds) != 1 || ds[0].SHA != shaB {
		t.Fatalf("history after retention: %+v, %v; want only the live commit B", ds, err)
	}
}
