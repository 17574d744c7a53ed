package hub

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/internal/pgtest"
)

// BenchmarkReplicaSyncNow measures "sync now" from the hub that takes
// the webhook to the agent's stream, on PostgreSQL: "1-replica" with the
// agent on that hub, "3-replicas" with the agent on another of three
// replicas (a holder lookup, NOTIFY, LISTEN; the third replica receives
// and ignores each notification). Reported: p50, p95 and p99 of the time
// from syncNow to the stream's queue, in µs.
func BenchmarkReplicaSyncNow(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("%d-replicas", n), func(b *testing.B) {
			ctx := context.Background()
			dsn := pgtest.URL(b)
			hubs := make([]*Server, n)
			chans := make([]*streams, n)
			for i := range hubs {
				s, err := New(ctx, Options{DB: dsn, HubID: fmt.Sprintf("hub-%d", i), Log: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				chans[i] = &streams{held: map[string]bool{}, got: make(chan string, 1)}
				s.SetDispatcher(chans[i])
				if err := s.StartReplicas(ctx, ReplicaOptions{}); err != nil {
					b.Fatal(err)
				}
				hubs[i] = s
			}
			holder := n / 2 // 0 of 1, 1 of 3
			chans[holder].held["prod"] = true
			hubs[holder].ChannelSink().Connected("prod", &channelpb.Hello{AgentName: "prod"})
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if err := hubs[0].syncNow("prod", &channelpb.SyncNow{Reason: "bench"}); err != nil {
					b.Fatal(err)
				}
				select {
				case <-chans[holder].got:
				case <-time.After(10 * time.Second):
					b.Fatal("sync now lost")
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			q := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds()) / 1e3
			}
			b.ReportMetric(q(0.50), "p50-us")
			b.ReportMetric(q(0.95), "p95-us")
			b.ReportMetric(q(0.99), "p99-us")
		})
	}
}
