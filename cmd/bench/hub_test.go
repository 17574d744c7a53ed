package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tether.dev/tether/internal/pgtest"
)

func TestCompareStored(t *testing.T) {
	for _, tc := range []struct {
		name          string
		stored, acked map[string]uint64
		lost, ahead   int
	}{
		{"all equal", map[string]uint64{"a": 3, "b": 1}, map[string]uint64{"a": 3, "b": 1}, 0, 0},
		{"an acked state missing", map[string]uint64{"a": 2, "b": 1}, map[string]uint64{"a": 3, "b": 1}, 1, 0},
		{"a GitSync missing", map[string]uint64{"b": 1}, map[string]uint64{"a": 3, "b": 1}, 1, 0},
		{"stored, ack never seen", map[string]uint64{"a": 4, "b": 1}, map[string]uint64{"a": 3, "b": 1}, 0, 1},
		{"nothing acked, nothing stored", map[string]uint64{}, map[string]uint64{"a": 0}, 0, 0},
	} {
		lost, ahead := compareStored(tc.stored, tc.acked)
		if lost != tc.lost || ahead != tc.ahead {
			t.Errorf("%s: lost %d, ahead %d; want %d, %d", tc.name, lost, ahead, tc.lost, tc.ahead)
		}
	}
}

// TestHubPart runs the hub part at a tiny scale against real `tether hub`
// processes (built from this tree) on SQLite and PostgreSQL: every
// measurement runs, the fleet shares connections, and no report is lost
// when a replica is killed. Figures are not checked: the machine is
// shared.
func TestHubPart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts hub processes and PostgreSQL")
	}
	pg := pgtest.Start(t)
	bin := filepath.Join(t.TempDir(), "tether")
	build := exec.Command("go", "build", "-o", bin, "tether.dev/tether/cmd/tether")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	e, err := startBareEnv("tether-bench-test-", bin)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	o := hubBench{agents: 3, load: 300 * time.Millisecond, webhooks: 5, webhookRate: 20,
		fleet: 30, perConn: 4, ownConns: 6, killAgents: 6, killAfter: 2 * time.Second}
	rows, err := e.benchHub(context.Background(), o, pg.NewDatabase)
	if err != nil {
		t.Fatal(err)
	}
	byWhat := map[string]row{}
	for _, r := range rows {
		byWhat[r.what] = r
		if r.tether == "" {
			t.Errorf("row %q has no figure", r.what)
		}
	}
	if len(rows) != 13 {
		t.Errorf("%d rows, want 3 per setup and 4 more", len(rows))
	}
	for _, setup := range []string{"1 hub, SQLite", "1 hub, PostgreSQL", "3 replicas, PostgreSQL"} {
		hook := byWhat["webhook → SyncNow at the agent, p99, "+setup]
		if !strings.Contains(hook.note, "5 GitHub push webhooks") {
			t.Errorf("%s: webhooks: %q", setup, hook.note)
		}
	}
	kill := byWhat["reports lost when 1 of 3 replicas is SIGKILLed under load, 6 agents"]
	if kill.tether != "0" || kill.target != "0: met" {
		t.Errorf("replica killed: lost %q, target %q (%s)", kill.tether, kill.target, kill.note)
	}
	if fleet := byWhat["hub RSS per replica, 30 agents over 3 replicas (multiplexed)"]; !strings.Contains(fleet.note, "9 connections in all") {
		t.Errorf("fleet of 30, 4 per connection over 3 hubs: %q", fleet.note)
	}
}
