package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
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

// The fault tests share these pieces: an app of many ConfigMaps, an agent
// that runs without a hub (and slowly enough that a fault lands in the
// middle of its work), a GitSync that prunes, and the evidence a fault
// test judges by: the objects that carry the GitSync's owner labels, the
// API server's audit log, and every inventory the GitSync's status held.

// faultWait bounds every wait of the fault tests: long enough for a slow,
// shared machine, never an assertion about speed.
const faultWait = 3 * time.Minute

// slowAgent are flags that make the agent's client slow enough that the
// test sees it in the middle of applying or pruning a few hundred objects.
var slowAgent = []string{"--kube-api-qps", "40", "--kube-api-burst", "40"}

// startLoneAgent starts `tether agent` without a hub as the user of
// kubeconfig, with its log and Git cache named after name. GitSyncs in
// the tests' namespaces apply as testenv.DeployerAccount.
func startLoneAgent(t *testing.T, dir, name, kubeconfig string, extra ...string) *agentProc {
	t.Helper()
	a := &agentProc{dir: dir, name: name}
	a.argv = append([]string{suite.tether, "agent", "--kubeconfig", kubeconfig,
		"--cache-dir", filepath.Join(dir, name+"-cache"),
		"--default-service-account", testenv.DeployerAccount}, extra...)
	a.start(t)
	return a
}

// cmName is the name of the i-th ConfigMap of a many-object app.
func cmName(i int) string { return fmt.Sprintf("cm-%03d", i) }

// manyConfigMaps is an app of the ConfigMaps whose indexes are in keep,
// each with data v, in one file.
func manyConfigMaps(keep []int, v string) map[string]string {
	var b strings.Builder
	for _, i := range keep {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  v: %q\n", cmName(i), v)
	}
	return map[string]string{"app/cms.yaml": b.String()}
}

// indexes is [from, to).
func indexes(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// names are the ConfigMap names of idx, as a set.
func names(idx []int) map[string]bool {
	out := make(map[string]bool, len(idx))
	for _, i := range idx {
		out[cmName(i)] = true
	}
	return out
}

// commitApp commits files and returns the commit's sha.
func commitApp(t *testing.T, repo *testenv.GitRepo, files map[string]string, msg string) string {
	t.Helper()
	sha, err := repo.Commit(files, msg)
	if err != nil {
		t.Fatal(err)
	}
	return sha
}

// createPruningGitSync creates GitSync name of ./app at url's main in ns,
// with prune on, polling every 2 s; it is deleted when the test ends.
func createPruningGitSync(t *testing.T, ns, name, url string) types.NamespacedName {
	t.Helper()
	gs := &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.GitSyncSpec{
			Source:        v1alpha1.GitSource{URL: url, Ref: v1alpha1.GitRef{Branch: "main"}},
			Path:          "./app",
			Interval:      metav1.Duration{Duration: 2 * time.Second},
			RetryInterval: &metav1.Duration{Duration: time.Second},
			Prune:         true,
		},
	}
	if err := suite.k8s.Create(context.Background(), gs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = suite.k8s.Delete(ctx, gs)
	})
	return client.ObjectKeyFromObject(gs)
}

// waitReady waits until the GitSync is Ready at commit sha of main for
// its current generation.
func waitReady(t *testing.T, key types.NamespacedName, sha string) *v1alpha1.GitSync {
	t.Helper()
	var gs *v1alpha1.GitSync
	eventually(t, faultWait, fmt.Sprintf("GitSync %s Ready at %s", key, short(sha)), func() (bool, string) {
		gs = &v1alpha1.GitSync{}
		if err := suite.k8s.Get(context.Background(), key, gs); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition)
		if c == nil {
			return false, "no Ready condition"
		}
		ok := c.Status == metav1.ConditionTrue && c.ObservedGeneration == gs.Generation &&
			gs.Status.LastAppliedRevision == "main@sha1:"+sha
		return ok, fmt.Sprintf("Ready=%s %s %q, applied %s", c.Status, c.Reason, c.Message, gs.Status.LastAppliedRevision)
	})
	return gs
}

// owned lists the ConfigMaps in ns that carry the owner labels of the
// GitSync key, by name.
func owned(key types.NamespacedName) (map[string]corev1.ConfigMap, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list := &corev1.ConfigMapList{}
	if err := suite.k8s.List(ctx, list, client.InNamespace(key.Namespace),
		client.MatchingLabels{v1alpha1.NameLabel: key.Name, v1alpha1.NamespaceLabel: key.Namespace}); err != nil {
		return nil, err
	}
	out := make(map[string]corev1.ConfigMap, len(list.Items))
	for _, cm := range list.Items {
		out[cm.Name] = cm
	}
	return out, nil
}

// waitOwned waits until cond accepts the GitSync's ConfigMaps and returns
// them.
func waitOwned(t *testing.T, key types.NamespacedName, what string, cond func(map[string]corev1.ConfigMap) bool) map[string]corev1.ConfigMap {
	t.Helper()
	var got map[string]corev1.ConfigMap
	eventually(t, faultWait, what, func() (bool, string) {
		var err error
		if got, err = owned(key); err != nil {
			return false, err.Error()
		}
		return cond(got), fmt.Sprintf("%d owned ConfigMaps", len(got))
	})
	return got
}

// withValue counts the ConfigMaps whose data v is v.
func withValue(cms map[string]corev1.ConfigMap, v string) int {
	n := 0
	for _, cm := range cms {
		if cm.Data["v"] == v {
			n++
		}
	}
	return n
}

// checkConverged checks the end state after a fault: the owned ConfigMaps
// are exactly those in Git, each with value v (no orphan, nothing
// missing).
func checkConverged(t *testing.T, key types.NamespacedName, inGit map[string]bool, v string) {
	t.Helper()
	// An orphan may be pruned by a later sync than the one that is Ready
	// first: wait for it rather than judge one instant.
	var cms map[string]corev1.ConfigMap
	eventually(t, faultWait, "the owned ConfigMaps to be exactly those in Git", func() (bool, string) {
		var err error
		if cms, err = owned(key); err != nil {
			return false, err.Error()
		}
		missing, orphans := missingAndExtra(cms, inGit)
		return len(missing)+len(orphans) == 0, fmt.Sprintf("%d owned; in Git but missing: %s; orphans (owned, not in Git): %s",
			len(cms), firstFew(missing), firstFew(orphans))
	})
	for name, cm := range cms {
		if cm.Data["v"] != v {
			t.Errorf("ConfigMap %s has v=%q, want %q", name, cm.Data["v"], v)
		}
	}
}

// firstFew shows up to 10 of names and how many there are.
func firstFew(names []string) string {
	if len(names) > 10 {
		return fmt.Sprintf("%d, e.g. %v", len(names), names[:10])
	}
	return fmt.Sprint(len(names), " ", names)
}

func missingAndExtra(cms map[string]corev1.ConfigMap, want map[string]bool) (missing, extra []string) {
	for n := range want {
		if _, ok := cms[n]; !ok {
			missing = append(missing, n)
		}
	}
	for n := range cms {
		if !want[n] {
			extra = append(extra, n)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

// audit reads the control plane's audit log.
func audit(t *testing.T) []testenv.AuditEvent {
	t.Helper()
	events, err := suite.cp.Audit()
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// configMapWrites are the events that changed a ConfigMap in ns with verb
// (dry runs and refused requests left out).
func configMapWrites(events []testenv.AuditEvent, ns, verb string) []testenv.AuditEvent {
	var out []testenv.AuditEvent
	for _, e := range events {
		if e.Verb == verb && e.Changed() && e.ObjectRef != nil && e.ObjectRef.Resource == "configmaps" && e.ObjectRef.Namespace == ns {
			out = append(out, e)
		}
	}
	return out
}

// checkDeletes fails the test for every ConfigMap of ns deleted in events
// that may not be deleted: one still in Git.
func checkDeletes(t *testing.T, events []testenv.AuditEvent, ns string, mayDelete map[string]bool) {
	t.Helper()
	for _, e := range configMapWrites(events, ns, "delete") {
		if !mayDelete[e.ObjectRef.Name] {
			t.Errorf("deleted although in Git: %s", e)
		}
	}
}

// distinctNames are the object names events are about.
func distinctNames(events []testenv.AuditEvent) map[string]bool {
	out := map[string]bool{}
	for _, e := range events {
		out[e.ObjectRef.Name] = true
	}
	return out
}

// inventoryWatch reads the GitSync's status.inventory every 50 ms and
// records every entry that leaves it although the test did not allow it
// to: an object that is still in Git and exists must never drop out of
// the inventory, or a later prune would miss it. It also records each
// applied revision it sees.
type inventoryWatch struct {
	mu       sync.Mutex
	mayLeave map[string]bool // inventory IDs that may leave
	lost     []string
	reads    int
	applied  []string // each new status.lastAppliedRevision, in order
	stop     func()
}

func watchInventory(t *testing.T, key types.NamespacedName) *inventoryWatch {
	t.Helper()
	w := &inventoryWatch{mayLeave: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var prev map[string]bool
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			gs := &v1alpha1.GitSync{}
			err := suite.k8s.Get(rctx, key, gs)
			rcancel()
			if err != nil {
				continue // the API server is away, or the test is ending
			}
			cur := map[string]bool{}
			if inv := gs.Status.Inventory; inv != nil {
				for _, e := range inv.Entries {
					cur[e.ID] = true
				}
			}
			w.mu.Lock()
			w.reads++
			if r := gs.Status.LastAppliedRevision; r != "" && (len(w.applied) == 0 || w.applied[len(w.applied)-1] != r) {
				w.applied = append(w.applied, r)
			}
			for id := range prev {
				if !cur[id] && !w.mayLeave[id] {
					w.lost = append(w.lost, fmt.Sprintf("%s (inventory of %d entries went to %d)", id, len(prev), len(cur)))
				}
			}
			w.mu.Unlock()
			prev = cur
		}
	}()
	w.stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(w.stop)
	return w
}

// allowLeaving lets the ConfigMaps named leave the inventory (they left
// Git).
func (w *inventoryWatch) allowLeaving(ns string, names map[string]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for n := range names {
		w.mayLeave[ns+"_"+n+"__ConfigMap"] = true
	}
}

// check fails the test if an entry left the inventory that was not
// allowed to, or if the watch never read the GitSync.
func (w *inventoryWatch) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.reads == 0 {
		t.Fatal("the inventory watch never read the GitSync")
	}
	if len(w.lost) > 0 {
		t.Errorf("%d inventory entries of objects still in Git were dropped, e.g. %v", len(w.lost), w.lost[:min(5, len(w.lost))])
	}
}

// appliedRevisions are the status.lastAppliedRevision values seen so far,
// in order, without repeats.
func (w *inventoryWatch) appliedRevisions() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.applied)
}
