package sync

import (
	"context"
	"fmt"
	"log/slog"
	gosync "sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/apply"
	"tether.dev/tether/drift"
	"tether.dev/tether/render"
	"tether.dev/tether/source"
)

// unsuspended shows the GitSyncs it reads as not suspended. The GitSyncs
// of TestDriftCorrectionUnderWorkerLimit are suspended in the API server,
// so that the shared agent leaves them to the test's own agent, which
// reads them through this client.
type unsuspended struct{ client.Client }

func (c unsuspended) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := c.Client.Get(ctx, key, obj, opts...)
	if gs, ok := obj.(*v1alpha1.GitSync); ok && err == nil {
		gs.Spec.Suspend = false
	}
	return err
}

// slowApplier is an applier whose every Apply takes a while (up to hold,
// or until another Apply overlaps it), and that records the most Apply
// calls it ever saw at once.
type slowApplier struct {
	Applier
	hold time.Duration

	mu       gosync.Mutex
	inFlight int
	most     int
	overlap  chan struct{} // closed when two applies overlap
}

func (a *slowApplier) Apply(ctx context.Context, plan *apply.Plan) (*apply.Result, error) {
	a.mu.Lock()
	a.inFlight++
	a.most = max(a.most, a.inFlight)
	overlap := a.overlap
	if a.inFlight > 1 {
		select {
		case <-overlap:
		default:
			close(overlap)
		}
	}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.inFlight--
		a.mu.Unlock()
	}()
	// A slow apply: the window in which a second one, if anything let it
	// run beside this one, would start.
	select {
	case <-overlap:
	case <-ctx.Done():
	case <-time.After(a.hold):
	}
	return a.Applier.Apply(ctx, plan)
}

// reset forgets what was seen so far.
func (a *slowApplier) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.most = a.inFlight
	a.overlap = make(chan struct{})
}

func (a *slowApplier) mostAtOnce() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.most
}

// Drift correction is a stage of the reconcile, so it runs under the
// controller's worker limit like any sync: with --concurrent 1, drift in
// two GitSyncs at once is corrected one GitSync after the other, never
// two applies at the same time. (It used to apply from inside Reconcile,
// beside a runner with its own limit.)
func TestDriftCorrectionUnderWorkerLimit(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "workers")
	_, repo, sha := appRepo(t)

	applier := &slowApplier{hold: 2 * time.Second, overlap: make(chan struct{})}
	agent := startOwnAgent(t, ns, 1, applier)
	var keys []types.NamespacedName
	for _, name := range []string{"x", "y"} {
		gs := newGitSync(ns, name, repo.URL, "./app")
		gs.Spec.Suspend = true // for the shared agent; the test's sees it unsuspended
		gs.Spec.Prune = false
		gs.Spec.TargetNamespace = newNamespace(t, "workers-"+name)
		keys = append(keys, create(t, gs))
	}
	for _, key := range keys {
		waitApplied(t, key, mainRev(sha))
		eventually(t, waitTimeout, func() error {
			if !agent.Tracking(drift.Owner{Namespace: key.Namespace, Name: key.Name}) {
				return fmt.Errorf("%s not tracked yet", key)
			}
			return nil
		})
	}

	// Drift in both at once; from now on the applies are corrections.
	applier.reset()
	for _, key := range keys {
		editConfigMap(t, getGitSync(t, key).Spec.TargetNamespace, "web-config", "greeting", "edited", "kubectl-edit")
	}
	for _, key := range keys {
		target := getGitSync(t, key).Spec.TargetNamespace
		eventually(t, waitTimeout, func() error {
			if v := configMapValue(t, target, "web-config", "greeting"); v != "hello" {
				return fmt.Errorf("%s: greeting %q not corrected yet", key, v)
			}
			gs := getGitSync(t, key)
			if c := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.DriftedCondition); c == nil || c.Reason != v1alpha1.ReasonDriftCorrected {
				return fmt.Errorf("%s: drift not reported corrected: %s", key, driftedStatus(gs))
			}
			return nil
		})
	}
	if n := applier.mostAtOnce(); n != 1 {
		t.Errorf("%d drift corrections applied at once with one worker, want 1", n)
	}
}

// startOwnAgent runs a second agent, for one test, that sees only the
// GitSyncs of ns (through unsuspended), with workers reconciles at once
// and applier wrapped around the real one. It returns its drift tracker.
func startOwnAgent(t *testing.T, ns string, workers int, applier *slowApplier) *drift.Tracker {
	t.Helper()
	cfg := rest.CopyConfig(adminConfig)
	cfg.QPS, cfg.Burst = 100, 300
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  testScheme(),
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	direct, err := client.New(cfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		t.Fatal(err)
	}
	applier.Applier = apply.NewManager(direct, apply.ManagerOptions{Concurrency: workers})
	quiet := slog.New(slog.DiscardHandler)
	r := &Reconciler{
		Client:      unsuspended{mgr.GetClient()},
		APIReader:   mgr.GetAPIReader(),
		Source:      source.NewFetcher(t.TempDir(), source.Options{ResolveTTL: testResolveTTL, Logger: quiet}),
		Renderer:    RenderFunc(render.Render),
		Applier:     applier,
		Recorder:    mgr.GetEventRecorder("tether-test"),
		Concurrency: workers,
		// Its GitSyncs apply with the agent's rights: the test is about
		// workers, not tenancy.
		AgentNamespace: ns,
	}
	tracker, err := drift.NewTracker(cfg, mgr.GetRESTMapper(), drift.Options{
		FieldManager: apply.DefaultFieldManager,
		Logger:       quiet,
		OnChange:     func(o drift.Owner) { r.enqueue(types.NamespacedName{Namespace: o.Namespace, Name: o.Name}) },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Drift = tracker
	if err := mgr.Add(tracker); err != nil {
		t.Fatal(err)
	}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("test agent: %v", err)
		}
	})
	return tracker
}
