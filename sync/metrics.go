package sync

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"tether.dev/tether/api/v1alpha1"
)

// Per-GitSync metrics, in the spirit of Flux's gotk_* series, served with
// controller-runtime's own on the agent's --metrics-addr. They are
// registered once per process (the tests and the demo run several agents
// in one), labelled by the GitSync, and deleted with it.
var (
	syncDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tether_gitsync_sync_duration_seconds",
		Help:    "Duration of one sync (checkout, render, plan, apply, prune, health) of a GitSync, by result: success, superseded (cancelled by newer work) or the failure reason.",
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	}, []string{"namespace", "name", "result"})
	readyGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tether_gitsync_ready",
		Help: "Whether the GitSync is Ready: 1 true, 0 false, -1 unknown (a sync in progress).",
	}, []string{"namespace", "name"})
	objectsGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tether_gitsync_objects",
		Help: "Objects the GitSync applied (its inventory).",
	}, []string{"namespace", "name"})
	driftGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tether_gitsync_drifted_objects",
		Help: "Objects of the GitSync that differ from what it applied.",
	}, []string{"namespace", "name"})
	driftCorrected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tether_gitsync_drift_corrected_objects_total",
		Help: "Drifted objects the GitSync's drift stage re-applied.",
	}, []string{"namespace", "name"})
)

// Results of a sync besides the failure reasons.
const (
	resultSuccess    = "success"
	resultSuperseded = "superseded"
)

func init() {
	crmetrics.Registry.MustRegister(syncDuration, readyGauge, objectsGauge, driftGauge, driftCorrected)
}

// observeSync records how long a sync took and how it ended.
func observeSync(key types.NamespacedName, result string, d time.Duration) {
	syncDuration.WithLabelValues(key.Namespace, key.Name, result).Observe(d.Seconds())
}

// observeDriftCorrected counts n drifted objects re-applied.
func observeDriftCorrected(key types.NamespacedName, n int) {
	driftCorrected.WithLabelValues(key.Namespace, key.Name).Add(float64(n))
}

// observeStatus sets the gauges from a status just written.
func observeStatus(gs *v1alpha1.GitSync) {
	ready := -1.0
	if c := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition); c != nil {
		switch c.Status {
		case metav1.ConditionTrue:
			ready = 1
		case metav1.ConditionFalse:
			ready = 0
		}
	}
	readyGauge.WithLabelValues(gs.Namespace, gs.Name).Set(ready)
	objects := 0
	if inv := gs.Status.Inventory; inv != nil {
		objects = len(inv.Entries)
	}
	objectsGauge.WithLabelValues(gs.Namespace, gs.Name).Set(float64(objects))
	drifted := 0
	if d := gs.Status.Drift; d != nil {
		drifted = d.Count
	}
	driftGauge.WithLabelValues(gs.Namespace, gs.Name).Set(float64(drifted))
}

// forgetMetrics deletes every series of a GitSync that is gone.
func forgetMetrics(key types.NamespacedName) {
	labels := prometheus.Labels{"namespace": key.Namespace, "name": key.Name}
	syncDuration.DeletePartialMatch(labels)
	readyGauge.DeletePartialMatch(labels)
	objectsGauge.DeletePartialMatch(labels)
	driftGauge.DeletePartialMatch(labels)
	driftCorrected.DeletePartialMatch(labels)
}
