package sync

import (
	"fmt"
	"testing"

	dto "github.com/prometheus/client_model/go"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"tether.dev/tether/api/v1alpha1"
)

// series returns the agent's metric samples named name for the GitSync
// ns/gsName, keyed by their result label ("" where there is none): the
// gauge value, or a histogram's sample count.
func series(t *testing.T, name, ns, gsName string) map[string]float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] != ns || labels["name"] != gsName {
				continue
			}
			out[labels["result"]] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	if h := m.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	return m.GetGauge().GetValue()
}

// TestMetrics: a GitSync's syncs, readiness, objects and drift show in the
// agent's metrics, a failure by its reason, and its series go with it.
func TestMetrics(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "metrics")
	_, repo, sha := appRepo(t)
	key := create(t, newGitSync(ns, "app", repo.URL, "./app"))
	got := waitApplied(t, key, mainRev(sha))
	want := float64(len(got.Status.Inventory.Entries))
	eventually(t, waitTimeout, func() error {
		if r := series(t, "tether_gitsync_ready", ns, "app")[""]; r != 1 {
			return fmt.Errorf("ready = %v, want 1", r)
		}
		if n := series(t, "tether_gitsync_objects", ns, "app")[""]; n != want || want == 0 {
			return fmt.Errorf("objects = %v, want %v", n, want)
		}
		if n := series(t, "tether_gitsync_sync_duration_seconds", ns, "app")["success"]; n < 1 {
			return fmt.Errorf("%v successful syncs observed, want at least 1", n)
		}
		return nil
	})

	commit(t, repo, map[string]string{"app/kustomization.yaml": "resources: [missing.yaml]\n"}, nil, "broken")
	waitFailed(t, key, v1alpha1.ReasonRenderFailed)
	eventually(t, waitTimeout, func() error {
		if r := series(t, "tether_gitsync_ready", ns, "app")[""]; r != 0 {
			return fmt.Errorf("ready = %v, want 0", r)
		}
		if n := series(t, "tether_gitsync_sync_duration_seconds", ns, "app")[v1alpha1.ReasonRenderFailed]; n < 1 {
			return fmt.Errorf("%v failed syncs observed", n)
		}
		return nil
	})

	deleteGitSync(t, key, true)
	eventually(t, waitTimeout, func() error {
		for _, name := range []string{"tether_gitsync_ready", "tether_gitsync_objects", "tether_gitsync_drifted_objects", "tether_gitsync_sync_duration_seconds"} {
			if s := series(t, name, ns, "app"); len(s) != 0 {
				return fmt.Errorf("%s still has %v", name, s)
			}
		}
		return nil
	})
}
