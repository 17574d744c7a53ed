package hub

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/store"
	"tether.dev/tether/internal/pgtest"
)

// awaitSyncNow waits for the sync now a stand-in stream gets; the bound
// only stops a test that fails.
func awaitSyncNow(t *testing.T, ch *streams, want string) {
	t.Helper()
	select {
	case got := <-ch.got:
		if got != want {
			t.Fatalf("the stream got %q, want %q", got, want)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the sync now %q never reached the agent's stream", want)
	}
}

func mustExec(t *testing.T, db *sql.DB, q string) {
	t.Helper()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// A "sync now" sent while the holder's LISTEN connection is down (its
// NOTIFY is lost) still reaches the agent once the holder listens again.
// The holder connects as a role of its own, which the test forbids to
// log in while it cuts the holder's connections (its LISTEN connection
// and its pool's, as a PostgreSQL restart does): the holder cannot listen
// again until the test allows it, after the sync now was sent, and then
// the first statements on its pool's old connections fail.
func TestReplicasSyncNowSurvivesLostNotify(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t).URL(t)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	mustExec(t, admin, `CREATE ROLE holder LOGIN SUPERUSER`)
	holderDSN := strings.Replace(dsn, "://postgres@", "://holder@", 1)
	if holderDSN == dsn {
		t.Fatalf("no user to replace in %s", dsn)
	}

	a, _ := startReplica(t, dsn, 0)
	c, held := startReplica(t, holderDSN, 1)
	held.held["prod"] = true
	c.ChannelSink().Connected("prod", &channelpb.Hello{AgentName: "prod", Version: "v1"})

	mustExec(t, admin, `ALTER ROLE holder NOLOGIN`)
	var listening int
	if err := admin.QueryRow(`SELECT count(*) FROM pg_stat_activity
		WHERE usename = 'holder' AND query LIKE 'LISTEN%'`).Scan(&listening); err != nil || listening != 1 {
		t.Fatalf("the holder's LISTEN connections: %d, %v; want 1", listening, err)
	}
	mustExec(t, admin, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'holder'`)
	// Until the backend is gone it might still take a NOTIFY.
	for deadline := time.Now().Add(30 * time.Second); ; {
		var n int
		if err := admin.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE usename = 'holder'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder's backends outlived their termination")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronisation
	}

	if err := a.syncNow("prod", &channelpb.SyncNow{Reason: "push while away"}); err != nil {
		t.Fatalf("sync now while the holder is not listening: %v", err)
	}
	if ps, err := a.store.DeliverableSyncNows(ctx, "prod"); err != nil || len(ps) != 1 || ps[0].Replica != "hub-1" {
		t.Fatalf("recorded requests: %+v, %v; want one for hub-1", ps, err)
	}
	mustExec(t, admin, `ALTER ROLE holder LOGIN`)
	awaitSyncNow(t, held, "prod push while away")
	if ps, err := a.store.DeliverableSyncNows(ctx, "prod"); err != nil || len(ps) != 0 {
		t.Fatalf("requests left after the delivery: %+v, %v", ps, err)
	}
}

// A "sync now" for an agent whose holder dies before it delivers it (here
// a replica that only exists in the database, as a dead one does until
// its heartbeat is old) reaches the agent on the replica it connects to
// next, once.
func TestReplicasSyncNowAfterHolderDied(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.URL(t)
	a, sender := startReplica(t, dsn, 0)
	b, next := startReplica(t, dsn, 1)
	if _, err := a.store.ReplicaHeartbeat(ctx, "ghost", "", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := a.store.AgentConnectedAt(ctx, "prod", "v1", "", "ghost"); err != nil {
		t.Fatal(err)
	}
	if err := a.syncNow("prod", &channelpb.SyncNow{Reason: "push"}); err != nil {
		t.Fatalf("sync now through the dying holder: %v", err)
	}

	next.held["prod"] = true
	b.ChannelSink().Connected("prod", &channelpb.Hello{AgentName: "prod", Version: "v1"})
	awaitSyncNow(t, next, "prod push")
	if ps, err := a.store.DeliverableSyncNows(ctx, "prod"); err != nil || len(ps) != 0 {
		t.Fatalf("requests left after the delivery: %+v, %v", ps, err)
	}
	if len(sender.got) != 0 {
		t.Fatal("the sender delivered a sync now to an agent it does not hold")
	}
}

// A "sync now" that reaches a replica which no longer holds the agent
// (the NOTIFY was addressed by an older record) is passed on to the
// replica that holds it now, which delivers it.
func TestReplicasSyncNowPassedOn(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.URL(t)
	a, stale := startReplica(t, dsn, 0)
	b, holder := startReplica(t, dsn, 1)
	holder.held["prod"] = true
	b.ChannelSink().Connected("prod", &channelpb.Hello{AgentName: "prod", Version: "v1"})
	// Addressed to a, as if a held prod when the sender looked.
	if err := a.sendSyncNow(ctx, store.PendingSyncNow{Agent: "prod", Replica: "hub-0", Msg: &channelpb.SyncNow{Reason: "push"}}); err != nil {
		t.Fatal(err)
	}
	awaitSyncNow(t, holder, "prod push")
	if ps, err := a.store.DeliverableSyncNows(ctx, "prod"); err != nil || len(ps) != 0 {
		t.Fatalf("requests left after the delivery: %+v, %v", ps, err)
	}
	if len(stale.got) != 0 {
		t.Fatal("a delivered a sync now to an agent it does not hold")
	}
}
