package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// BenchmarkIngest measures reports stored per second into SQLite: one
// caller at a time (Serial) and many agents' streams at once (Parallel,
// where reports share transactions). Each report is a new state of one of
// 1,000 GitSyncs across 100 agents.
func BenchmarkIngest(b *testing.B) {
	for _, mode := range []string{"Serial", "Parallel"} {
		b.Run(mode, func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), "hub.db"))
			ctx := context.Background()
			var seq atomic.Uint64
			one := func() {
				n := seq.Add(1)
				r := report(n, "synced", fmt.Sprintf("main@sha1:%040x", n%50), "")
				r.Name = fmt.Sprintf("gs-%d", n%1000)
				agent := fmt.Sprintf("agent-%d", n%100)
				if _, err := s.Ingest(ctx, agent, r); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			if mode == "Serial" {
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
		})
	}
}
