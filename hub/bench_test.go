package hub

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// BenchmarkReport measures Sink.Report end to end (store, metrics, commit
// status scheduling) with many agents' streams reporting at once, as the
// channel server calls it: reports/s is the figure to watch (target 2,000).
func BenchmarkReport(b *testing.B) {
	s, _, _ := newHub(b, Options{})
	ctx := context.Background()
	var seq atomic.Uint64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			r := rep(fmt.Sprintf("gs-%d", n%1000), n, "synced", fmt.Sprintf("%040x", n%50), "")
			if _, err := s.Report(ctx, fmt.Sprintf("agent-%d", n%100), r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reports/s")
}
