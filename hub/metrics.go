package hub

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"tether.dev/tether/hub/status"
)

type metrics struct {
	registry      *prometheus.Registry
	connected     prometheus.Gauge
	reports       *prometheus.CounterVec
	webhooks      *prometheus.CounterVec
	statusPosts   *prometheus.CounterVec
	statusFailure *prometheus.CounterVec
	syncNow       *prometheus.CounterVec
	events        *prometheus.CounterVec
}

// newMetrics uses a registry of its own, so two hubs in one process (tests)
// don't collide.
func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tether_hub_connected_agents", Help: "Agents with an open channel.",
		}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_hub_reports_received_total",
			Help: "Sync reports received, by result: stored (a new state), stale (not newer than the stored one), error.",
		}, []string{"result"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_hub_webhooks_total",
			Help: "Git webhooks received, by provider and result (dispatched, unmatched, ignored, unauthorized, malformed, unconfigured, error).",
		}, []string{"provider", "result"}),
		statusPosts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_hub_commit_status_posts_total",
			Help: "Commit status posts, by Git host kind and result (posted; unchanged: the host had it already; retried; failed: refused or out of attempts, dropped).",
		}, []string{"host", "result"}),
		statusFailure: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_hub_commit_status_failures_total",
			Help: "Commit statuses dropped unposted (refused by the host, or out of attempts), by Git host kind.",
		}, []string{"host"}),
		syncNow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_hub_resync_requests_total",
			Help: "Resync requests through the API and the page, by result (sent, unknown, offline, unauthorized, forbidden).",
		}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_hub_warning_events_total",
			Help: "Warning events received from agents, by result (kept, unknown: of a GitSync the hub has no report of).",
		}, []string{"result"}),
	}
	m.registry.MustRegister(m.connected, m.reports, m.webhooks, m.statusPosts, m.statusFailure, m.syncNow, m.events,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) statusResult(h status.Host, result string) {
	m.statusPosts.WithLabelValues(string(h.Kind), result).Inc()
	if result == "failed" {
		m.statusFailure.WithLabelValues(string(h.Kind)).Inc()
	}
}
