package hub

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/server"
	"tether.dev/tether/internal/pgtest"
)

// streams stands in for a channel server: the agents it holds, and the
// "sync now" each got.
type streams struct {
	mu   sync.Mutex
	held map[string]bool
	got  chan string
}

func (f *streams) SyncNow(agent string, msg *channelpb.SyncNow) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.held[agent] {
		return fmt.Errorf("agent %q: %w", agent, server.ErrNotConnected)
	}
	f.got <- agent + " " + msg.GetReason()
	return nil
}

// startReplica starts hub replica hub-i on dsn with a stand-in channel
// server.
func startReplica(t *testing.T, dsn string, i int) (*Server, *streams) {
	t.Helper()
	ctx := context.Background()
	s, err := New(ctx, Options{DB: dsn, HubID: fmt.Sprintf("hub-%d", i)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ch := &streams{held: map[string]bool{}, got: make(chan string, 4)}
	s.SetDispatcher(ch)
	if err := s.StartReplicas(ctx, ReplicaOptions{PeerURL: fmt.Sprintf("http://127.0.0.1:%d", 1000+i)}); err != nil {
		t.Fatal(err)
	}
	return s, ch
}

// Two hubs on one PostgreSQL: a "sync now" given to the one that does not
// hold the agent reaches it through the one that does; both say the agent
// is connected; once the holder leaves, neither does, and "sync now"
// fails as for any agent without a stream.
func TestReplicasSyncNow(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.URL(t)
	var hubs [2]*Server
	var chans [2]*streams
	for i := range hubs {
		hubs[i], chans[i] = startReplica(t, dsn, i)
	}
	a, b := hubs[0], hubs[1]
	chans[1].held["prod"] = true
	b.ChannelSink().Connected("prod", &channelpb.Hello{AgentName: "prod", Version: "v1"})

	if !a.isConnected("prod") || !b.isConnected("prod") {
		t.Fatalf("connected at a %v, at b %v; want both", a.isConnected("prod"), b.isConnected("prod"))
	}
	if err := a.syncNow("prod", &channelpb.SyncNow{Reason: "push"}); err != nil {
		t.Fatalf("sync now at the replica without the agent: %v", err)
	}
	select {
	case got := <-chans[1].got:
		if got != "prod push" {
			t.Fatalf("the holder's stream got %q", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the sync now given to a never reached the agent's stream on b")
	}
	if len(chans[0].got) != 0 {
		t.Fatal("a delivered a sync now to an agent it does not hold")
	}

	chans[1].held["prod"] = false
	b.ChannelSink().Disconnected("prod")
	if err := a.syncNow("prod", &channelpb.SyncNow{Reason: "push"}); err == nil {
		t.Fatal("sync now for an agent no replica holds succeeded")
	}
	// isConnected trusts what it read for a second; the database says no.
	if _, err := a.store.AgentReplica(ctx, "prod", time.Minute); err == nil {
		t.Fatal("the database still names a holder after the disconnect")
	}
}

// On SQLite the hub is alone: StartReplicas does nothing, and refuses a
// peer URL, which only replicas on PostgreSQL use.
func TestReplicasNeedPostgres(t *testing.T) {
	s, err := New(context.Background(), Options{DB: t.TempDir() + "/hub.db"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.StartReplicas(context.Background(), ReplicaOptions{}); err != nil || s.replicaSet() != nil {
		t.Fatalf("StartReplicas on SQLite: %v, replicas %v", err, s.replicaSet())
	}
	if err := s.StartReplicas(context.Background(), ReplicaOptions{PeerURL: "http://10.0.0.1:8080"}); err == nil {
		t.Fatal("a peer URL on SQLite was accepted")
	}
}
