package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"tether.dev/tether/channel/channelpb"
)

// pendingSyncNows lists DeliverableSyncNows(agent) as
// "agent replica namespace/name repo branch reason".
func pendingSyncNows(t *testing.T, s *Store, agent string) []string {
	t.Helper()
	ps, err := s.DeliverableSyncNows(context.Background(), agent)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range ps {
		m := p.Msg
		out = append(out, fmt.Sprintf("%s %s %s/%s %s %s %s", p.Agent, p.Replica, m.GetNamespace(), m.GetName(),
			m.GetRepoUrl(), m.GetBranchOrTag(), m.GetReason()))
	}
	return out
}

// A "sync now" is kept, whole, until one replica claims it; of two claims
// one wins; requests older than SyncNowKeep are never listed, and the
// sweep and Prune drop them.
func TestSyncNowRequests(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		clock := &fakeClock{t: time.Now()}
		s := open(t, dsn)
		s.now = clock.now

		push := &channelpb.SyncNow{RepoUrl: "https://git.example.com/team/app.git", BranchOrTag: "main", Reason: "push"}
		old, err := s.AddSyncNow(ctx, PendingSyncNow{Agent: "prod", Replica: "hub-c", Msg: push})
		if err != nil {
			t.Fatal(err)
		}
		clock.add(SyncNowKeep / 2)
		id, err := s.AddSyncNow(ctx, PendingSyncNow{Agent: "prod", Replica: "hub-c", Msg: &channelpb.SyncNow{Namespace: "apps", Name: "web", Reason: "resync"}})
		if err != nil || id == old {
			t.Fatalf("second request: id %d (first %d), %v", id, old, err)
		}
		if _, err := s.AddSyncNow(ctx, PendingSyncNow{Agent: "staging", Replica: "hub-b", Msg: push}); err != nil {
			t.Fatal(err)
		}
		want := "[prod hub-c / https://git.example.com/team/app.git main push prod hub-c apps/web   resync]"
		if got := fmt.Sprint(pendingSyncNows(t, s, "prod")); got != want {
			t.Fatalf("prod's requests:\n got %s\nwant %s", got, want)
		}
		if got := len(pendingSyncNows(t, s, "")); got != 3 {
			t.Fatalf("every agent's requests: %d, want 3", got)
		}

		if ok, err := s.ClaimSyncNow(ctx, id); !ok || err != nil {
			t.Fatalf("first claim: %v, %v", ok, err)
		}
		if ok, err := s.ClaimSyncNow(ctx, id); ok || err != nil {
			t.Fatalf("second claim of the same request: %v, %v; want false", ok, err)
		}
		if got := len(pendingSyncNows(t, s, "prod")); got != 1 {
			t.Fatalf("prod's requests after a claim: %d, want 1", got)
		}

		// The first request is now older than SyncNowKeep: not listed for
		// its agent, deleted by the sweep.
		clock.add(SyncNowKeep/2 + time.Second)
		if got := pendingSyncNows(t, s, "prod"); len(got) != 0 {
			t.Fatalf("an expired request is listed: %v", got)
		}
		if got := fmt.Sprint(pendingSyncNows(t, s, "")); got != "[staging hub-b / https://git.example.com/team/app.git main push]" {
			t.Fatalf("sweep: %s", got)
		}
		if ok, _ := s.ClaimSyncNow(ctx, old); ok {
			t.Fatal("the sweep left an expired request")
		}

		// A request given back keeps its age: recorded again as created
		// SyncNowKeep ago, it is expired at once.
		if _, err := s.AddSyncNow(ctx, PendingSyncNow{Agent: "prod", Msg: push, Created: clock.now().Add(-SyncNowKeep - time.Second)}); err != nil {
			t.Fatal(err)
		}
		if got := pendingSyncNows(t, s, "prod"); len(got) != 0 {
			t.Fatalf("a request given back grew young again: %v", got)
		}

		clock.add(SyncNowKeep)
		p, err := s.Prune(ctx, clock.now().Add(-24*time.Hour))
		if err != nil || p != (Pruned{SyncNows: 2}) {
			t.Fatalf("Prune = %+v, %v; want the two expired requests", p, err)
		}
	})
}
