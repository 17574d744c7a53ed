package sync

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/apply"
	"tether.dev/tether/internal/testenv"
	"tether.dev/tether/render"
	"tether.dev/tether/source"
)

// revisions records every value data.rev of ConfigMap "rev" in ns takes,
// in the order the API server stored them.
type revisions struct {
	mu     gosync.Mutex
	values []int
}

func watchRevisions(t *testing.T, ns string) *revisions {
	t.Helper()
	c, err := client.NewWithWatch(adminConfig, client.Options{Scheme: testScheme()})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(testContext(t), &corev1.ConfigMapList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	r := &revisions{}
	go func() {
		for ev := range w.ResultChan() {
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok || cm.Name != "rev" || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				continue
			}
			n, err := strconv.Atoi(cm.Data["rev"])
			if err != nil {
				continue
			}
			r.mu.Lock()
			if len(r.values) == 0 || r.values[len(r.values)-1] != n {
				r.values = append(r.values, n)
			}
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *revisions) seen() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.values)
}

// revisionFiles is commit n of the latest-wins repository: ConfigMap rev
// (data.rev = n), ConfigMap extra-n, bulk more ConfigMaps bulk-n-*, and,
// unless stuck is "", that Deployment, which never becomes ready (no
// kubelet): the sync waits for its health until newer work cancels it.
func revisionFiles(n, bulk int, stuck string) map[string]string {
	files := map[string]string{
		"app/rev.yaml":   configMapYAML("rev", "", map[string]string{"rev": strconv.Itoa(n)}),
		"app/extra.yaml": configMapYAML(fmt.Sprintf("extra-%d", n), "", map[string]string{"rev": strconv.Itoa(n)}),
	}
	resources := []string{"rev.yaml", "extra.yaml"}
	bulkYAML := ""
	for i := range bulk {
		bulkYAML += "---\n" + configMapYAML(fmt.Sprintf("bulk-%d-%d", n, i), "", map[string]string{"i": strconv.Itoa(i)})
	}
	files["app/bulk.yaml"] = testenv.DeleteFile
	if bulk > 0 {
		files["app/bulk.yaml"] = bulkYAML
		resources = append(resources, "bulk.yaml")
	}
	files["app/deployment.yaml"] = testenv.DeleteFile
	if stuck != "" {
		files["app/deployment.yaml"] = stuck
		resources = append(resources, "deployment.yaml")
	}
	files["app/kustomization.yaml"] = kustomization(resources...)
	return files
}

// Commits pushed while an older revision is still being applied (a slow
// apply of many objects, a health wait that never ends) supersede it: the
// end state is the newest commit, an older revision is never applied after
// a newer one, and the inventory is complete — what superseded syncs
// applied is pruned once the newest commit drops it.
func TestCommitsWhileApplying(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "latest")
	revs := watchRevisions(t, ns)
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "app")
	stuck := readFile(t, "testdata/app/deployment.yaml")
	sha := []string{"", commit(t, repo, revisionFiles(1, 0, stuck), nil, "one")}
	gs := newGitSync(ns, "app", repo.URL, "./app")
	gs.Spec.Wait = true
	gs.Spec.Timeout = nil // the default, 5m: newer work must end each wait
	key := create(t, gs)

	reconciling := func(n int) {
		t.Helper()
		waitGitSync(t, key, func(gs *v1alpha1.GitSync) error {
			c := findCondition(gs, v1alpha1.ReconcilingCondition)
			if c == nil || c.Status != "True" || gs.Status.LastAttemptedRevision != mainRev(sha[n]) {
				return fmt.Errorf("not syncing commit %d yet", n)
			}
			return nil
		})
	}
	// 1 waits for its Deployment; 2 supersedes it and waits too.
	reconciling(1)
	mustExistEventually(t, configMap(ns, "extra-1"))
	sha = append(sha, commit(t, repo, revisionFiles(2, 0, stuck), nil, "two"))
	reconciling(2)
	mustExistEventually(t, configMap(ns, "extra-2"))
	// 3 applies many objects; 4 and 5 arrive while it does.
	sha = append(sha, commit(t, repo, revisionFiles(3, 150, stuck), nil, "three"))
	reconciling(3)
	sha = append(sha, commit(t, repo, revisionFiles(4, 0, stuck), nil, "four"))
	sha = append(sha, commit(t, repo, revisionFiles(5, 0, ""), nil, "five"))

	got := waitApplied(t, key, mainRev(sha[5]))
	want := []string{ns + "_extra-5__ConfigMap", ns + "_rev__ConfigMap"}
	if ids := inventoryIDs(got); !slices.Equal(ids, want) {
		t.Errorf("inventory = %q, want %q", ids, want)
	}
	cm := configMap(ns, "rev")
	mustExist(t, cm)
	if cm.Data["rev"] != "5" {
		t.Errorf("rev = %q, want 5", cm.Data["rev"])
	}
	mustBeAbsent(t, deployment(ns, "web"))
	// Every object a superseded sync applied went with the inventory.
	list := &corev1.ConfigMapList{}
	if err := k8s.List(testContext(t), list, client.InNamespace(ns), client.MatchingLabels{v1alpha1.NameLabel: "app"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range list.Items {
		if c.Name != "rev" && c.Name != "extra-5" {
			t.Errorf("ConfigMap %s of a superseded revision was left behind", c.Name)
		}
	}
	seen := revs.seen()
	if !slices.IsSorted(seen) || len(seen) == 0 || seen[len(seen)-1] != 5 {
		t.Errorf("data.rev took the values %v: an older revision was applied after a newer one", seen)
	}
	t.Logf("revisions applied in order: %v", seen)
	if n := countEvents(t, key, corev1.EventTypeWarning, v1alpha1.ReasonHealthCheckFailed); n != 0 {
		t.Errorf("%d HealthCheckFailed events: a superseded wait reported a failure", n)
	}
}

func mustExistEventually(t *testing.T, obj client.Object) {
	t.Helper()
	eventually(t, waitTimeout, func() error { return get(t, obj) })
}

// applyThenSupersede applies for real, then cancels the sync as newer work
// arriving right after the apply would, and records whether prune ran.
type applyThenSupersede struct {
	Applier
	supersede func()
	pruned    atomic.Bool
}

func (a *applyThenSupersede) Apply(ctx context.Context, plan *apply.Plan) (*apply.Result, error) {
	res, err := a.Applier.Apply(ctx, plan)
	a.supersede()
	return res, err
}

func (a *applyThenSupersede) Prune(ctx context.Context, old, new *v1alpha1.ResourceInventory, owner apply.Owner) (*apply.PruneResult, error) {
	a.pruned.Store(true)
	return a.Applier.Prune(ctx, old, new, owner)
}

// quietRecorder drops events: the superseded sync must send none.
type quietRecorder struct {
	recorder.EventRecorder
	sent atomic.Int32
}

func (q *quietRecorder) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {
	q.sent.Add(1)
}

// A sync superseded between its apply and its prune never prunes: the
// objects that left Git stay until a sync of the newest work prunes them,
// and the inventory keeps both what was owned and what was just applied.
// The superseded sync runs in a Reconciler of the test's own (on the real
// API server and Git), on a GitSync the shared agent leaves alone while it
// is suspended; then the agent takes over.
func TestSupersededSyncNeverPrunes(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "no-prune")
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "app")
	files := func(names ...string) map[string]string {
		out := map[string]string{"app/kustomization.yaml": kustomization(names...)}
		for _, n := range []string{"a", "b", "c"} {
			out["app/"+n+".yaml"] = testenv.DeleteFile
		}
		for i, n := range names {
			out["app/"+n] = configMapYAML(n[:1], "", map[string]string{"i": strconv.Itoa(i)})
		}
		return out
	}
	sha1 := commit(t, repo, files("a.yaml", "b.yaml"), nil, "a and b")
	key := create(t, newGitSync(ns, "app", repo.URL, "./app"))
	waitApplied(t, key, mainRev(sha1))
	update(t, key, func(gs *v1alpha1.GitSync) { gs.Spec.Suspend = true })
	eventually(t, waitTimeout, func() error {
		gs := &v1alpha1.GitSync{}
		if err := agentCache.Get(testContext(t), key, gs); err != nil || !gs.Spec.Suspend {
			return fmt.Errorf("agent has not seen the suspension yet (%v)", err)
		}
		return nil
	})
	b := configMap(ns, "b")
	mustExist(t, b)
	sha2 := commit(t, repo, files("a.yaml", "c.yaml"), nil, "b leaves, c comes")

	cacheDir := t.TempDir()
	applier := &applyThenSupersede{Applier: apply.NewManager(k8s, apply.ManagerOptions{})}
	events := &quietRecorder{}
	r := &Reconciler{
		Client: k8s, APIReader: k8s, Applier: applier, Recorder: events,
		Source:         source.NewFetcher(cacheDir, source.Options{Logger: slog.New(slog.DiscardHandler)}),
		Renderer:       RenderFunc(render.Render),
		AgentNamespace: ns,
	}
	r.init()
	applier.supersede = func() { r.inflight.cancel(key) }
	gs := getGitSync(t, key)
	gs.Spec.Suspend = false // as the sync would see it
	ctx, done := r.inflight.begin(testContext(t), key, workOf(gs))
	defer done()
	rev, auth, err := r.stages.Resolve(ctx, gs)
	if err != nil {
		t.Fatal(err)
	}
	if rev.SHA != sha2 {
		t.Fatalf("resolved %s, want %s", rev, sha2)
	}
	res, err := r.sync(ctx, gs, false, rev, auth, whyRevision, time.Time{})
	if err != nil {
		t.Fatalf("superseded sync: %v", err)
	}
	if !res.Requeue {
		t.Errorf("superseded sync returned %+v, want a requeue for the newer work", res)
	}
	if applier.pruned.Load() {
		t.Error("the superseded sync pruned")
	}
	mustExist(t, b)
	mustExist(t, configMap(ns, "c"))
	got := getGitSync(t, key)
	want := []string{ns + "_a__ConfigMap", ns + "_b__ConfigMap", ns + "_c__ConfigMap"}
	if ids := inventoryIDs(got); !slices.Equal(ids, want) {
		t.Errorf("inventory after the superseded sync = %q, want %q (old and newly applied)", ids, want)
	}
	if got.Status.LastAppliedRevision != mainRev(sha1) {
		t.Errorf("lastAppliedRevision = %q: the superseded sync claimed success", got.Status.LastAppliedRevision)
	}
	if c := readyOf(got); c != nil && c.Status == "False" {
		t.Errorf("Ready = %+v: the superseded sync reported a failure", c)
	}
	if n := events.sent.Load(); n != 0 {
		t.Errorf("the superseded sync sent %d event(s)", n)
	}

	// The agent takes the newest work over and prunes b.
	update(t, key, func(gs *v1alpha1.GitSync) { gs.Spec.Suspend = false })
	got = waitApplied(t, key, mainRev(sha2))
	want = []string{ns + "_a__ConfigMap", ns + "_c__ConfigMap"}
	if ids := inventoryIDs(got); !slices.Equal(ids, want) {
		t.Errorf("inventory = %q, want %q", ids, want)
	}
	mustBeAbsent(t, configMap(ns, "b"))
}
