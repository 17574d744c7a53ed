package e2e

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestNewerCommitsMidApply pushes two commits while the agent is still
// applying an older revision of 300 objects. The newest commit wins: the
// GitSync ends Ready at it with every object at its value, the applied
// revision never goes back to an older commit once a newer one was shown,
// and nothing still in Git is deleted.
func TestNewerCommitsMidApply(t *testing.T) {
	const n = 300
	repo, err := newGitServer(t).CreateRepo("acme/many")
	if err != nil {
		t.Fatal(err)
	}
	all := indexes(0, n)
	shas := []string{commitApp(t, repo, manyConfigMaps(all, "1"), "v1")}
	ns := newNamespace(t, "newer")
	startLoneAgent(t, t.TempDir(), "agent", suite.kubeconfig, append([]string{"--leader-elect=false", "--source-ttl", "500ms"}, slowAgent...)...)
	key := createPruningGitSync(t, ns, "many", repo.URL)
	inv := watchInventory(t, key)
	waitReady(t, key, shas[0])

	shas = append(shas, commitApp(t, repo, manyConfigMaps(all, "2"), "v2"))
	cms := waitOwned(t, key, "revision 2 to be applying", func(cms map[string]corev1.ConfigMap) bool { return withValue(cms, "2") >= 30 })
	if withValue(cms, "2") >= n {
		t.Fatalf("revision 2 was applied in full before the next commit: the commit missed the apply")
	}
	shas = append(shas, commitApp(t, repo, manyConfigMaps(all, "3"), "v3"))
	waitReady(t, key, shas[2])
	checkConverged(t, key, names(all), "3")
	inv.check(t)
	checkDeletes(t, audit(t), ns, nil)

	seen := inv.appliedRevisions()
	t.Logf("applied revisions seen, in order: %v", seen)
	last := -1
	for _, r := range seen {
		i := slices.Index(shas, r[len("main@sha1:"):])
		if i < last {
			t.Fatalf("the applied revision went back from %s to %s: %v", shas[last], r, seen)
		}
		last = i
	}
}
