package e2e

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestAPIServerRestartMidApply stops the kube-apiserver in the middle of
// a 500-object apply and starts it again (same port, same etcd data),
// twice: during the first sync, and during a sync that changes every
// object and removes 20. Each time the GitSync converges to Ready at the
// commit, the inventory never drops an object that is in Git, and nothing
// still in Git is deleted (the audit log says so): no prune runs on the
// partial state.
func TestAPIServerRestartMidApply(t *testing.T) {
	const n = 500
	dir := t.TempDir()
	repo, err := newGitServer(t).CreateRepo("acme/many")
	if err != nil {
		t.Fatal(err)
	}
	all := indexes(0, n)
	shaA := commitApp(t, repo, manyConfigMaps(all, "1"), "500 ConfigMaps")
	ns := newNamespace(t, "apiserver-fault")
	// No leader election: an agent that loses its lease exits, which is
	// the agent's restart, not what this test is about.
	startLoneAgent(t, dir, "agent", suite.kubeconfig, append([]string{"--leader-elect=false", "--source-ttl", "500ms"}, slowAgent...)...)
	key := createPruningGitSync(t, ns, "many", repo.URL)
	inv := watchInventory(t, key)

	t.Log("step: the API server stops during the first apply")
	restartAPIServerWhen(t, ns, key, n, func(cms map[string]corev1.ConfigMap) bool { return len(cms) >= 50 })
	waitReady(t, key, shaA)
	checkConverged(t, key, names(all), "1")
	inv.check(t)
	checkDeletes(t, audit(t), ns, nil)

	t.Log("step: the API server stops while a commit changes every object and removes 20")
	kept, removed := indexes(0, n-20), indexes(n-20, n)
	inv.allowLeaving(ns, names(removed))
	shaB := commitApp(t, repo, manyConfigMaps(kept, "2"), "change 480, remove 20")
	restartAPIServerWhen(t, ns, key, len(kept), func(cms map[string]corev1.ConfigMap) bool { return withValue(cms, "2") >= 50 })
	waitReady(t, key, shaB)
	checkConverged(t, key, names(kept), "2")
	inv.check(t)
	checkDeletes(t, audit(t), ns, names(removed))
}

// restartAPIServerWhen waits until the GitSync's ConfigMaps satisfy
// started, stops the API server, and starts it again. It fails the test
// when the agent had already applied all of the `total` objects before
// the stop, since then the fault did not land in the middle of an apply.
func restartAPIServerWhen(t *testing.T, ns string, key types.NamespacedName, total int, started func(map[string]corev1.ConfigMap) bool) {
	t.Helper()
	before := len(audit(t))
	waitOwned(t, key, "the apply to be under way", started)
	if err := suite.cp.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped { // the test failed while the API server was away
			_ = suite.cp.StartAPIServer()
		}
	})
	// Every request the agent had answered before the stop is in the
	// audit log (blocking mode), so this is what it applied in time.
	events := audit(t)[before:]
	if err := suite.cp.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	stopped = false
	applied := distinctNames(configMapWrites(events, ns, "patch"))
	t.Logf("the API server stopped after %d of %d objects were applied", len(applied), total)
	if len(applied) >= total {
		t.Fatalf("the agent applied all %d objects before the API server stopped: the fault missed the apply", total)
	}
}
