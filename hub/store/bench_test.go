package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/internal/pgtest"
)

// BenchmarkIngest measures reports stored per second into SQLite and into
// PostgreSQL (a local server of internal/pgtest, fsync off): one caller at
// a time (Serial) and many agents' streams at once (Parallel, where
// reports share transactions). Each report is a new state of one of 1,000
// GitSyncs across 100 agents, with two conditions, a namespace count and
// a drifted object: what the hub stores in child rows. The Queued modes
// also queue the commit status of each report in the outbox, in the same
// transaction (IngestQueued), as a hub with a Git host configured does.
func BenchmarkIngest(b *testing.B) {
	for _, db := range []string{"sqlite", "postgres"} {
		for _, mode := range []string{"Serial", "Parallel", "SerialQueued", "ParallelQueued"} {
			b.Run(db+"/"+mode, func(b *testing.B) { benchIngest(b, db, mode) })
		}
	}
}

func benchIngest(b *testing.B, db, mode string) {
	dsn := filepath.Join(b.TempDir(), "hub.db")
	if db == "postgres" {
		dsn = pgtest.URL(b)
	}
	s := open(b, dsn)
	ctx := context.Background()
	var seq atomic.Uint64
	one := func() {
		n := seq.Add(1)
		r := report(n, "synced", fmt.Sprintf("main@sha1:%040x", n%50), "")
		r.Name = fmt.Sprintf("gs-%d", n%1000)
		r.Conditions = []*channelpb.Condition{{Type: "Ready", Status: "True", Reason: "Synced"}, {Type: "Drifted", Status: "False"}}
		r.Namespaces = []*channelpb.NamespaceCount{{Namespace: "apps", Objects: 12}}
		r.Drift.Objects = []*channelpb.DriftedObject{{Kind: "ConfigMap", Namespace: "apps", Name: "cfg", Paths: []string{".data.a"}}}
		agent := fmt.Sprintf("agent-%d", n%100)
		var q *QueuedStatus
		if strings.HasSuffix(mode, "Queued") {
			q = &QueuedStatus{SHA: fmt.Sprintf("%040x", n%50), Context: "tether/" + agent + "/apps/" + r.Name, State: "success",
				RepoURL: r.SourceUrl, Description: "applied and ready on " + agent}
		}
		if _, _, err := s.IngestQueued(ctx, agent, r, q); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	if strings.HasPrefix(mode, "Serial") {
		for b.Loop() {
			one()
		}
	} else {
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				one()
			}
		})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reports/s")
}
