package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// An agent is held by the replica it last connected to: a stream that
// ends late on the replica it left does not disconnect it; a replica
// whose heartbeats stop is given up with its agents, and claims them
// again when it comes back.
func TestReplicasHoldAgents(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		clock := &fakeClock{t: time.Now()}
		s := open(t, dsn)
		s.now = clock.now
		const ttl = 10 * time.Second
		for _, id := range []string{"a", "b"} {
			joined, err := s.ReplicaHeartbeat(ctx, id, "http://"+id+":8080", ttl)
			if err != nil || !joined {
				t.Fatalf("first heartbeat of %s: joined %v, %v", id, joined, err)
			}
		}
		holder := func() string {
			t.Helper()
			r, err := s.AgentReplica(ctx, "prod", ttl)
			if errors.Is(err, ErrNotFound) {
				return ""
			}
			if err != nil {
				t.Fatal(err)
			}
			return r.ID + " " + r.URL
		}
		connected := func() bool {
			t.Helper()
			a, err := s.Agent(ctx, "prod")
			if err != nil {
				t.Fatal(err)
			}
			return a.Connected
		}
		if h := holder(); h != "" {
			t.Fatalf("an agent never seen is held by %q", h)
		}
		must(t, s.AgentConnectedAt(ctx, "prod", "v1", "uid", "a"))
		if h := holder(); h != "a http://a:8080" {
			t.Fatalf("holder %q, want a", h)
		}
		// The agent reconnects to b before a notices that its stream died.
		must(t, s.AgentConnectedAt(ctx, "prod", "v1", "uid", "b"))
		must(t, s.AgentDisconnectedFrom(ctx, "prod", "a"))
		if h := holder(); h != "b http://b:8080" || !connected() {
			t.Fatalf("after a's late disconnect: holder %q, connected %v; want b, true", h, connected())
		}

		// b stops heartbeating (killed, or cut from the database); a
		// goes on, and gives b up once its heartbeat is older than ttl.
		clock.add(ttl / 2)
		if _, err := s.ReplicaHeartbeat(ctx, "a", "http://a:8080", ttl); err != nil {
			t.Fatal(err)
		}
		if h := holder(); h != "b http://b:8080" || !connected() {
			t.Fatalf("within b's ttl: holder %q, connected %v", h, connected())
		}
		clock.add(ttl / 2)
		if h := holder(); h != "" {
			t.Fatalf("b's heartbeat expired, yet it holds the agent: %q", h)
		}
		if _, err := s.ReplicaHeartbeat(ctx, "a", "http://a:8080", ttl); err != nil {
			t.Fatal(err)
		}
		if connected() {
			t.Fatal("the agent of a replica given up is still connected")
		}
		// b comes back: it learns it was given up, and claims its agent.
		joined, err := s.ReplicaHeartbeat(ctx, "b", "http://b:8080", ttl)
		if err != nil || !joined {
			t.Fatalf("b's heartbeat after it was given up: joined %v, %v; want true", joined, err)
		}
		must(t, s.AgentClaimed(ctx, "prod", "b"))
		if h := holder(); h != "b http://b:8080" || !connected() {
			t.Fatalf("after b's claim: holder %q, connected %v", h, connected())
		}
		// b stops cleanly: its agent is disconnected at once.
		must(t, s.ReplicaLeft(ctx, "b"))
		if h := holder(); h != "" || connected() {
			t.Fatalf("after b left: holder %q, connected %v", h, connected())
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
