package e2e

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/internal/testenv"
)

// TestAgentKilledMidApply SIGKILLs the agent while it applies 300 objects
// of a first sync and starts it again. The GitSync converges: every object
// in Git exists, every object with its owner labels is in Git, and
// nothing was deleted.
func TestAgentKilledMidApply(t *testing.T) {
	const n = 300
	repo, key, ag := killMidFirstApply(t, n)
	sha, err := repo.Head()
	if err != nil {
		t.Fatal(err)
	}
	ag.start(t)
	waitReady(t, key, sha)
	checkConverged(t, key, names(indexes(0, n)), "1")
	checkDeletes(t, audit(t), key.Namespace, nil)
}

// TestAgentKilledMidApplyThenDropped is TestAgentKilledMidApply with a
// commit, made while the agent is down, that drops 40 of the objects:
// 20 the killed apply had already created and 20 it had not reached. The
// 20 created must be pruned, not left behind as orphans.
//
// The sync records every object it is about to create in
// status.inventory before it writes any (ownBeforeApply), so the restarted
// agent's prune finds them.
func TestAgentKilledMidApplyThenDropped(t *testing.T) {
	const n = 300
	repo, key, ag := killMidFirstApply(t, n)
	created, err := owned(key)
	if err != nil {
		t.Fatal(err)
	}
	// Drop the first 20 objects the killed agent created and the last 20
	// of Git, which it had not reached.
	var drop []int
	for i := range n {
		if _, ok := created[cmName(i)]; ok && len(drop) < 20 {
			drop = append(drop, i)
		}
	}
	drop = append(drop, indexes(n-20, n)...)
	dropped := names(drop)
	var keep []int
	for i := range n {
		if !dropped[cmName(i)] {
			keep = append(keep, i)
		}
	}
	sha := commitApp(t, repo, manyConfigMaps(keep, "1"), "drop 40")
	ag.start(t)
	waitReady(t, key, sha)
	checkConverged(t, key, names(keep), "1")
	checkDeletes(t, audit(t), key.Namespace, dropped)
}

// killMidFirstApply commits n ConfigMaps, starts a slow agent and a
// GitSync of them, and SIGKILLs the agent once it has created some but
// not all of them. It fails the test when the kill came too late.
func killMidFirstApply(t *testing.T, n int) (*testenv.GitRepo, types.NamespacedName, *agentProc) {
	t.Helper()
	repo, err := newGitServer(t).CreateRepo("acme/many")
	if err != nil {
		t.Fatal(err)
	}
	commitApp(t, repo, manyConfigMaps(indexes(0, n), "1"), fmt.Sprintf("%d ConfigMaps", n))
	ns := newNamespace(t, "kill-apply")
	ag := startLoneAgent(t, t.TempDir(), "agent", suite.kubeconfig, append([]string{"--leader-elect=false", "--source-ttl", "500ms"}, slowAgent...)...)
	key := createPruningGitSync(t, ns, "many", repo.URL)
	waitOwned(t, key, "the first apply to be under way", func(cms map[string]corev1.ConfigMap) bool { return len(cms) >= 30 })
	ag.kill()
	created, err := owned(key)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the agent was killed after creating %d of %d objects", len(created), n)
	if len(created) >= n {
		t.Fatalf("the agent created all %d objects before it was killed: the fault missed the apply", n)
	}
	return repo, key, ag
}

// TestAgentKilledMidPrune SIGKILLs the agent while it prunes 250 of 300
// objects that left Git, and starts it again. The prune finishes: every
// object with the GitSync's owner labels is in Git, the 50 in Git exist,
// and only objects that left Git were deleted.
func TestAgentKilledMidPrune(t *testing.T) {
	const n, kept = 300, 50
	dir := t.TempDir()
	repo, err := newGitServer(t).CreateRepo("acme/many")
	if err != nil {
		t.Fatal(err)
	}
	sha := commitApp(t, repo, manyConfigMaps(indexes(0, n), "1"), "300 ConfigMaps")
	ns := newNamespace(t, "kill-prune")
	ag := startLoneAgent(t, dir, "agent", suite.kubeconfig, append([]string{"--leader-elect=false", "--source-ttl", "500ms"}, slowAgent...)...)
	key := createPruningGitSync(t, ns, "many", repo.URL)
	waitReady(t, key, sha)

	keep := indexes(0, kept)
	sha = commitApp(t, repo, manyConfigMaps(keep, "1"), "keep 50")
	waitOwned(t, key, "the prune to be under way", func(cms map[string]corev1.ConfigMap) bool { return len(cms) <= n-20 })
	ag.kill()
	left, err := owned(key)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the agent was killed with %d of %d objects left", len(left), n)
	if len(left) <= kept {
		t.Fatalf("the agent pruned everything before it was killed: the fault missed the prune")
	}
	ag.start(t)
	waitReady(t, key, sha)
	checkConverged(t, key, names(keep), "1")
	checkDeletes(t, audit(t), ns, names(indexes(kept, n)))
}
