package sync

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// benchObjects is the size of the set the benchmarks sync: the size of
// the forced-resync target of `make bench` (docs/performance.md).
const benchObjects = 1000

// benchSet commits benchObjects ConfigMaps to a repository of its own and
// syncs them with a GitSync whose interval is long, so that only the
// benchmark's own actions move it. It returns the GitSync's key.
func benchSet(b *testing.B, prefix string) types.NamespacedName {
	b.Helper()
	ns := newNamespace(b, prefix)
	srv := newGitServer(b, testenv.GitServerOptions{})
	repo := newRepo(b, srv, "bench")
	files := map[string]string{}
	for i := 0; i < benchObjects; i++ {
		files[fmt.Sprintf("set/cm-%04d.yaml", i)] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%04d\ndata:\n  value: \"%d\"\n", i, i)
	}
	sha := commit(b, repo, files, nil, "set")
	gs := newGitSync(ns, "bench", repo.URL, "./set")
	gs.Spec.Interval = metav1.Duration{Duration: time.Hour}
	key := create(b, gs)
	waitApplied(b, key, mainRev(sha))
	return key
}

// statusWrites counts the status writes among reqs.
func statusWrites(reqs []string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, "PATCH ") && strings.HasSuffix(r, "/status") {
			n++
		}
	}
	return n
}

// BenchmarkForcedResync times a resync annotation → Ready with the value
// echoed, nothing changed in Git or the cluster, for benchObjects objects:
// the fixed cost of a sync. It reports the agent's API requests and status
// writes per resync.
func BenchmarkForcedResync(b *testing.B) {
	key := benchSet(b, "bench-resync")
	start := agentRequests.count()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		value := fmt.Sprintf("bench-%d", i)
		update(b, key, func(gs *v1alpha1.GitSync) {
			metav1.SetMetaDataAnnotation(&gs.ObjectMeta, v1alpha1.ResyncAnnotation, value)
		})
		pollEvery10ms(b, func() error {
			gs := getGitSync(b, key)
			if gs.Status.LastHandledResyncAt != value || !meta.IsStatusConditionTrue(gs.Status.Conditions, v1alpha1.ReadyCondition) {
				return fmt.Errorf("resync %s not handled: %s", value, describe(gs))
			}
			return nil
		})
	}
	b.StopTimer()
	reqs := agentRequests.since(start)
	logRequests(b, reqs)
	b.ReportMetric(float64(len(reqs))/float64(b.N), "requests/op")
	b.ReportMetric(float64(statusWrites(reqs))/float64(b.N), "status-writes/op")
}

// BenchmarkDriftCorrection times an out-of-band edit of one ConfigMap of
// benchObjects → the value put back (mode correct), and reports the
// agent's API requests and status writes per correction.
func BenchmarkDriftCorrection(b *testing.B) {
	key := benchSet(b, "bench-drift")
	start := agentRequests.count()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("cm-%04d", i%benchObjects)
		cm := &corev1.ConfigMap{}
		ctx := testContext(b)
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: name}, cm); err != nil {
			b.Fatal(err)
		}
		want := cm.Data["value"]
		patch := client.MergeFrom(cm.DeepCopy())
		cm.Data["value"] = "edited"
		if err := k8s.Patch(ctx, cm, patch, client.FieldOwner("bench-edit")); err != nil {
			b.Fatal(err)
		}
		pollEvery10ms(b, func() error {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(cm), cm); err != nil {
				return err
			}
			if cm.Data["value"] != want {
				return fmt.Errorf("%s not corrected yet", name)
			}
			return nil
		})
	}
	b.StopTimer()
	// The last correction's status write may still be on its way.
	eventually(b, waitTimeout, func() error {
		gs := getGitSync(b, key)
		if c := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.DriftedCondition); c == nil || c.Reason != v1alpha1.ReasonDriftCorrected {
			return fmt.Errorf("%s", driftedStatus(gs))
		}
		return nil
	})
	reqs := agentRequests.since(start)
	logRequests(b, reqs)
	b.ReportMetric(float64(len(reqs))/float64(b.N), "requests/op")
	b.ReportMetric(float64(statusWrites(reqs))/float64(b.N), "status-writes/op")
}

// logRequests logs the requests by kind, for reading a profile beside.
func logRequests(b *testing.B, reqs []string) {
	counts := map[string]int{}
	for _, r := range reqs {
		counts[r]++
	}
	b.Logf("%d requests: %v", len(reqs), counts)
}

// pollEvery10ms calls cond every 10 ms until it returns nil: a benchmark
// needs a steady resolution, where eventually slows down to 200 ms.
func pollEvery10ms(b *testing.B, cond func() error) {
	b.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("after %s: %v", waitTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
