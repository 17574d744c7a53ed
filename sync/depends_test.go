package sync

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// folders returns, for each name, a folder name/ in a repository holding a
// ConfigMap called name.
func folders(names ...string) map[string]string {
	files := map[string]string{}
	for _, n := range names {
		files[n+"/kustomization.yaml"] = kustomization("configmap.yaml")
		files[n+"/configmap.yaml"] = configMapYAML(n, "", map[string]string{"owner": n})
	}
	return files
}

// dependent is a GitSync of folder name/ that depends on deps (same
// namespace).
func dependent(ns, name, repoURL string, deps ...string) *v1alpha1.GitSync {
	gs := newGitSync(ns, name, repoURL, "./"+name)
	for _, d := range deps {
		gs.Spec.DependsOn = append(gs.Spec.DependsOn, v1alpha1.DependencyReference{Name: d})
	}
	return gs
}

// isReadyAt reports whether the GitSync key is Ready with rev applied.
func isReadyAt(t testing.TB, key types.NamespacedName, rev string) error {
	t.Helper()
	gs := getGitSync(t, key)
	if c := readyOf(gs); c == nil || c.Status != metav1.ConditionTrue || gs.Status.LastAppliedRevision != rev {
		return fmt.Errorf("%s is not Ready at %s: %s", key, rev, describe(gs))
	}
	return nil
}

// c depends on b depends on a: b and c wait, saying for what, while a
// fails; once a is fixed they apply in order.
func TestDependencyChain(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "depends")
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "chain")
	files := folders("a", "b", "c")
	files["a/kustomization.yaml"] = kustomization("configmap.yaml", "missing.yaml") // a cannot render
	sha1 := commit(t, repo, files, nil, "a is broken")

	c := create(t, dependent(ns, "c", repo.URL, "b"))
	b := create(t, dependent(ns, "b", repo.URL, "a"))
	a := create(t, dependent(ns, "a", repo.URL))

	waitFailed(t, a, v1alpha1.ReasonRenderFailed, "missing.yaml")
	waitFailed(t, b, v1alpha1.ReasonDependencyNotReady, "waiting for dependency "+ns+"/a", "missing.yaml")
	waitFailed(t, c, v1alpha1.ReasonDependencyNotReady, "waiting for dependency "+ns+"/b")
	consistently(t, 3*time.Second, func() error {
		for _, n := range []string{"a", "b", "c"} {
			if err := absent(t, configMap(ns, n)); err != nil {
				return fmt.Errorf("applied while a dependency is not Ready: %w", err)
			}
		}
		for _, key := range []types.NamespacedName{b, c} {
			if gs := getGitSync(t, key); gs.Status.LastAttemptedRevision != "" || gs.Status.LastAppliedRevision != "" {
				return fmt.Errorf("%s attempted a sync while its dependency is not Ready: %s", key, describe(gs))
			}
		}
		return nil
	})
	if gs := getGitSync(t, a); gs.Status.LastAttemptedRevision != mainRev(sha1) {
		t.Errorf("a: %s", describe(gs))
	}

	sha2 := commit(t, repo, map[string]string{"a/kustomization.yaml": kustomization("configmap.yaml")}, nil, "fix a")
	// Whenever a dependent's object exists, its dependency is Ready at the
	// new revision already (checked in this order: the object first).
	eventually(t, waitTimeout, func() error {
		for _, pair := range [][2]types.NamespacedName{{b, a}, {c, b}} {
			if err := get(t, configMap(ns, pair[0].Name)); err == nil {
				if err := isReadyAt(t, pair[1], mainRev(sha2)); err != nil {
					t.Fatalf("%s applied before its dependency was Ready: %v", pair[0], err)
				}
			}
		}
		for _, key := range []types.NamespacedName{a, b, c} {
			if err := isReadyAt(t, key, mainRev(sha2)); err != nil {
				return err
			}
		}
		return nil
	})
	ga, gb, gc := getGitSync(t, a), getGitSync(t, b), getGitSync(t, c)
	if gb.Status.LastSyncTime.Before(ga.Status.LastSyncTime) || gc.Status.LastSyncTime.Before(gb.Status.LastSyncTime) {
		t.Errorf("lastSyncTime out of order: a %s, b %s, c %s", ga.Status.LastSyncTime, gb.Status.LastSyncTime, gc.Status.LastSyncTime)
	}
	for _, n := range []string{"a", "b", "c"} {
		mustExist(t, configMap(ns, n))
	}
}

// x and y depend on each other: both report the cycle (Stalled) instead of
// waiting for ever, a GitSync that depends on the cycle waits, and others
// keep syncing; breaking the cycle lets everything apply.
func TestDependencyCycle(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "cycle")
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "cycle")
	sha1 := commit(t, repo, folders("x", "y", "w", "z"), nil, "four folders")

	x := create(t, dependent(ns, "x", repo.URL, "y"))
	y := create(t, dependent(ns, "y", repo.URL, "x"))
	w := create(t, dependent(ns, "w", repo.URL, "x"))
	z := create(t, dependent(ns, "z", repo.URL))

	for _, tc := range []struct {
		key  types.NamespacedName
		path string
	}{
		{x, ns + "/x → " + ns + "/y → " + ns + "/x"},
		{y, ns + "/y → " + ns + "/x → " + ns + "/y"},
	} {
		gs := waitFailed(t, tc.key, v1alpha1.ReasonDependencyCycle, "dependency cycle: "+tc.path)
		stalled := findCondition(gs, v1alpha1.StalledCondition)
		if stalled == nil || stalled.Status != metav1.ConditionTrue || stalled.Reason != v1alpha1.ReasonDependencyCycle {
			t.Errorf("%s: Stalled = %+v", tc.key, stalled)
		}
	}
	waitFailed(t, w, v1alpha1.ReasonDependencyNotReady, "waiting for dependency "+ns+"/x", "dependency cycle")
	// The agent is not stuck: an independent GitSync applies, then follows
	// a new commit.
	waitApplied(t, z, mainRev(sha1))
	sha2 := commit(t, repo, map[string]string{"z/configmap.yaml": configMapYAML("z", "", map[string]string{"owner": "z2"})}, nil, "z2")
	waitApplied(t, z, mainRev(sha2))
	if v := configMapValue(t, ns, "z", "owner"); v != "z2" {
		t.Errorf("z owner = %q", v)
	}
	for _, n := range []string{"x", "y", "w"} {
		mustBeAbsent(t, configMap(ns, n))
	}

	update(t, y, func(gs *v1alpha1.GitSync) { gs.Spec.DependsOn = nil })
	for _, key := range []types.NamespacedName{y, x, w} {
		gs := waitApplied(t, key, mainRev(sha2))
		if s := findCondition(gs, v1alpha1.StalledCondition); s != nil {
			t.Errorf("%s: still Stalled: %+v", key, s)
		}
	}
}

// dependents runs on every event of every GitSync (each status write): it
// must read only the GitSyncs that depend on the one at hand, not copy
// all of them, or a thousand GitSyncs cost a million copies.
func TestDependentsReadOnlyDependents(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "dependents")
	const others = 40
	var keys []types.NamespacedName
	for i := 0; i < others; i++ {
		gs := newGitSync(ns, fmt.Sprintf("other-%02d", i), "http://127.0.0.1:1/none.git", "./")
		gs.Spec.Suspend = true // nothing to sync: only the cache matters
		keys = append(keys, create(t, gs))
	}
	dep := dependent(ns, "dependent", "http://127.0.0.1:1/none.git", "target")
	dep.Spec.Suspend = true
	keys = append(keys, create(t, dep))
	eventually(t, waitTimeout, func() error {
		for _, k := range keys {
			if err := agentCache.Get(testContext(t), k, &v1alpha1.GitSync{}); err != nil {
				return fmt.Errorf("agent cache: %w", err)
			}
		}
		return nil
	})

	// The cache client, counting the GitSyncs each List hands over.
	counting := &listCounter{Client: agentCache}
	r := &Reconciler{Client: counting}
	target := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "target"}}
	ctx := testContext(t)
	got := r.dependents(ctx, target)
	if want := (types.NamespacedName{Namespace: ns, Name: "dependent"}); len(got) != 1 || got[0] != want {
		t.Fatalf("dependents of %s/target = %v, want [%s]", ns, got, want)
	}
	if listed := counting.listed; listed != 1 {
		t.Errorf("dependents read %d GitSyncs to find the one that depends on %s/target, want 1", listed, ns)
	}
	if got := r.dependents(ctx, &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other-00"}}); len(got) != 0 {
		t.Errorf("dependents of other-00 = %v, want none", got)
	}
}

// listCounter counts the GitSyncs its client's List calls return.
type listCounter struct {
	client.Client
	listed int
}

func (c *listCounter) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	err := c.Client.List(ctx, list, opts...)
	if l, ok := list.(*v1alpha1.GitSyncList); ok {
		c.listed += len(l.Items)
	}
	return err
}
