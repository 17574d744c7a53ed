package sync

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	crsource "sigs.k8s.io/controller-runtime/pkg/source"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/drift"
	"tether.dev/tether/source"
)

// Finalizer lets a GitSync with prune enabled delete what it applied when
// the GitSync itself is deleted.
const Finalizer = "tether.dev/finalizer"

// authRefreshAge is how long credentials read from a Secret are reused
// before the Secret is read again. A failed authentication reads it again at
// once, so a rotated Secret is picked up on the first poll that needs it.
const authRefreshAge = 10 * time.Minute

// Reconciler reconciles GitSync objects.
type Reconciler struct {
	// Client reads GitSyncs from the cache and writes their status.
	Client client.Client
	// APIReader reads Secrets directly, so the agent caches no Secrets.
	APIReader client.Reader
	Source    Source
	Renderer  Renderer
	Applier   Applier
	Recorder  recorder.EventRecorder
	// Drift, when set, is the watch cache that detects drift between
	// syncs; without it drift is only corrected by the next sync.
	Drift DriftTracker
	// Reporter, when set, receives every status change (for the hub).
	Reporter Reporter
	// Concurrency bounds how many syncs run at once (default 4).
	Concurrency int
	// ApplierFor, when set, gives the applier that acts as a service
	// account of a namespace (impersonation), for spec.serviceAccountName.
	ApplierFor func(namespace, serviceAccount string) (Applier, error)
	// AgentNamespace is the platform team's namespace: only GitSyncs in it
	// may apply with the agent's own rights. Empty: no namespace may.
	AgentNamespace string
	// DefaultServiceAccount is used for GitSyncs outside AgentNamespace
	// that name none, so that tenants never get the agent's own rights.
	// Without it such GitSyncs are refused (ServiceAccountRequired).
	DefaultServiceAccount string
	// NoCrossNamespaceRefs refuses dependencies in other namespaces.
	NoCrossNamespaceRefs bool
	// Now is the clock (time.Now when nil); tests of windows set it.
	Now func() time.Time

	runner *runner
	status *statusWriter
	kick   chan event.GenericEvent
	ctx    context.Context
	stop   context.CancelFunc

	mu       gosync.Mutex
	failures map[types.NamespacedName]int
	auths    map[types.NamespacedName]authEntry
	// done is the last work each GitSync finished successfully: the cache
	// may not show that sync's status yet when the next reconcile runs.
	done map[types.NamespacedName]want
	// warned is the reason and message of the last failure warned about,
	// per GitSync, until it syncs successfully again.
	warned map[types.NamespacedName]string
}

type authEntry struct {
	secret  string
	auth    *source.Auth
	fetched time.Time
}

// SetupWithManager registers the reconciler and the runnable that stops
// running syncs when the manager stops.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.init()
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		r.stop()
		r.runner.wait()
		return nil
	})); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.GitSync{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		WatchesRawSource(crsource.Channel(r.kick, &handler.EnqueueRequestForObject{})).
		// A dependency's status changes wake the GitSyncs waiting for it.
		Watches(&v1alpha1.GitSync{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []reconcile.Request {
			var reqs []reconcile.Request
			for _, key := range r.dependents(ctx, obj) {
				reqs = append(reqs, reconcile.Request{NamespacedName: key})
			}
			return reqs
		})).
		// SkipNameValidation: tests and the demo run more than one agent
		// in one process; the name only labels metrics.
		WithOptions(controller.Options{MaxConcurrentReconciles: max(r.Concurrency, 4), SkipNameValidation: ptr(true)}).
		Named("gitsync").
		Complete(r)
}

func (r *Reconciler) init() {
	r.runner = newRunner(r.concurrency())
	r.status = &statusWriter{client: r.Client, reader: r.APIReader, reporter: r.Reporter, locks: map[types.NamespacedName]*gosync.Mutex{}}
	r.kick = make(chan event.GenericEvent, 1024)
	r.ctx, r.stop = context.WithCancel(context.Background())
	r.failures = map[types.NamespacedName]int{}
	r.auths = map[types.NamespacedName]authEntry{}
	r.warned = map[types.NamespacedName]string{}
	r.done = map[types.NamespacedName]want{}
}

func (r *Reconciler) setDone(key types.NamespacedName, w want) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done[key] = w
}

// alreadyDone reports whether w is exactly the work last finished for key.
func (r *Reconciler) alreadyDone(key types.NamespacedName, w want) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.done[key]
	return ok && d == w
}

func (r *Reconciler) concurrency() int {
	if r.Concurrency > 0 {
		return r.Concurrency
	}
	return 4
}

// SyncNow asks for an immediate reconcile of one GitSync, as a webhook or
// the hub's "sync now" does.
func (r *Reconciler) SyncNow(key types.NamespacedName) {
	gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}}
	select {
	case r.kick <- event.GenericEvent{Object: gs}:
	default: // the queue is full of kicks already; the next one will do
	}
}

// kickAfter requeues key after d, for retries after a failed sync.
func (r *Reconciler) kickAfter(key types.NamespacedName, d time.Duration) {
	time.AfterFunc(d, func() {
		if r.ctx.Err() == nil {
			r.SyncNow(key)
		}
	})
}

// Reconcile resolves the GitSync's revision and starts a sync when one is
// needed. It never renders or applies itself.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := req.NamespacedName
	gs := &v1alpha1.GitSync{}
	if err := r.Client.Get(ctx, key, gs); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(key)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	log := logr.FromContextOrDiscard(ctx).WithValues("gitsync", key.String())
	ctx = logr.NewContext(ctx, log)

	if !gs.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, gs)
	}
	if gs.Spec.Prune && !controllerutil.ContainsFinalizer(gs, Finalizer) {
		patch := client.MergeFrom(gs.DeepCopy())
		controllerutil.AddFinalizer(gs, Finalizer)
		if err := r.Client.Patch(ctx, gs, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("GitSync %s: add finalizer: %w", key, err)
		}
	}
	if gs.Spec.Suspend {
		log.V(1).Info("suspended")
		return ctrl.Result{}, nil
	}
	if err := r.validate(gs); err != nil {
		reason := v1alpha1.ReasonInvalidSpec
		var se *stageError
		if errors.As(err, &se) {
			reason = se.reason
		}
		return ctrl.Result{}, r.fail(ctx, key, reason, err, true, nil)
	}

	ref := SourceRef(gs)
	if v := resyncValue(gs); v != "" && v != gs.Status.LastHandledResyncAt {
		// A resync fetches: list the ref now, not from a listing cached
		// before the push that the person asking for it wants applied.
		r.Source.Forget(gs.Spec.Source.URL)
	}
	auth, err := r.auth(ctx, gs, false)
	if err != nil {
		return r.retry(ctx, gs, v1alpha1.ReasonFetchFailed, err, apierrors.IsNotFound(err))
	}
	rev, err := r.Source.Resolve(ctx, gs.Spec.Source.URL, ref, auth)
	if errors.Is(err, source.ErrAuth) && gs.Spec.Source.SecretRef != nil {
		// The Secret may have been rotated since it was read: read it again.
		if auth, err = r.auth(ctx, gs, true); err == nil {
			rev, err = r.Source.Resolve(ctx, gs.Spec.Source.URL, ref, auth)
		}
	}
	if err != nil {
		// Git is unreachable or refuses us; the cluster can still drift.
		r.checkDriftIfSuspect(ctx, gs)
		return r.retry(ctx, gs, v1alpha1.ReasonFetchFailed, err, !source.IsTransient(err))
	}

	why := decide(gs, rev.String())
	w := want{Revision: rev.String(), Generation: gs.Generation, Resync: resyncValue(gs)}
	if why != whyNone && r.alreadyDone(key, w) {
		// This exact work finished a moment ago and the cache has not
		// caught up with its status: re-applying now would overwrite a
		// change made since (drift) instead of reporting it.
		why = whyNone
	}
	if why == whyNone && r.Drift != nil && !r.Drift.Tracking(driftOwner(gs)) {
		// The agent (re)started: apply once to learn what is applied.
		why = whyUntracked
	}
	if why == whyNone {
		r.setFailures(key, 0)
		// Only the watch cache is read: no API request when nothing moved.
		r.checkDriftIfSuspect(ctx, gs)
		return ctrl.Result{RequeueAfter: nextPoll(gs)}, nil
	}
	if err := r.checkDependencies(ctx, gs); err != nil {
		var de *dependencyError
		reason := v1alpha1.ReasonDependencyNotReady
		if errors.As(err, &de) && de.cycle {
			reason = v1alpha1.ReasonDependencyCycle
		}
		if !r.runner.busy(key) {
			if werr := r.fail(ctx, key, reason, err, reason == v1alpha1.ReasonDependencyCycle, nil); werr != nil {
				return ctrl.Result{}, werr
			}
		}
		return ctrl.Result{RequeueAfter: min(nextPoll(gs), retryInterval(gs))}, nil
	}
	pol, _ := policy(gs) // validated above
	b, scheduled := timeGate(gs, pol, r.now(), why)
	if b != nil {
		return r.holdBack(ctx, gs, b, rev.String())
	}

	snapshot := gs.DeepCopy()
	if r.runner.start(r.ctx, key, w, func(ctx context.Context) {
		r.sync(logr.NewContext(ctx, log.WithValues("revision", w.Revision)), snapshot, rev, auth, why, scheduled, w)
	}) {
		log.Info("sync started", "revision", w.Revision, "reason", why)
	}
	return ctrl.Result{RequeueAfter: nextPoll(gs)}, nil
}

// holdBack records that a schedule or a sync window keeps rev from being
// applied, reports drift meanwhile (correction waits for the windows too)
// and looks again when the block may end.
func (r *Reconciler) holdBack(ctx context.Context, gs *v1alpha1.GitSync, b *blocked, rev string) (ctrl.Result, error) {
	if !sameBlock(gs, b, rev) {
		if _, err := r.status.patch(ctx, client.ObjectKeyFromObject(gs), func(live *v1alpha1.GitSync) { markBlocked(live, b, rev) }); err != nil {
			return ctrl.Result{}, err
		}
		logr.FromContextOrDiscard(ctx).Info("sync held back", "revision", rev, "reason", b.reason, "message", b.msg)
	}
	r.checkDriftIfSuspect(ctx, gs)
	after := nextPoll(gs)
	if !b.until.IsZero() {
		after = min(after, time.Until(b.until)+time.Second)
	}
	return ctrl.Result{RequeueAfter: max(after, time.Second)}, nil
}

// retry records a failure that happened before any sync started and
// schedules the next attempt with backoff. A sync still running for an
// older revision is left alone and keeps the status.
func (r *Reconciler) retry(ctx context.Context, gs *v1alpha1.GitSync, reason string, err error, user bool) (ctrl.Result, error) {
	key := client.ObjectKeyFromObject(gs)
	n := r.addFailure(key)
	logr.FromContextOrDiscard(ctx).Error(err, "sync not started", "reason", reason, "failures", n)
	if !r.runner.busy(key) {
		if werr := r.fail(ctx, key, reason, err, user, nil); werr != nil {
			return ctrl.Result{}, werr
		}
	}
	return ctrl.Result{RequeueAfter: backoff(gs, n)}, nil
}

// fail writes a failed Ready condition and a warning event, once per
// distinct message so that retries don't flood the event stream.
//
// Fix (found by TestBrokenYAMLFailsRenderAndRecovers): a sync marks the
// GitSync progressing before it fails, so the live Ready condition never
// showed the previous failure and every retry of a failed sync emitted the
// same warning again (a new Event object each time, as the GitSync's
// resourceVersion differs). prev, when not nil, is the GitSync as it was
// before the failed attempt and is compared as well.
func (r *Reconciler) fail(ctx context.Context, key types.NamespacedName, reason string, err error, user bool, prev *v1alpha1.GitSync) error {
	var changed bool
	gs, werr := r.status.patch(ctx, key, func(gs *v1alpha1.GitSync) {
		changed = !sameFailure(gs, reason, err.Error())
		markFailed(gs, reason, err, user)
	})
	if prev != nil && sameFailure(prev, reason, err.Error()) {
		changed = false
	}
	// Fix (found when the package's tests ran beside kube-controller-manager,
	// i.e. under more load): both gs and prev come from the cache, which may
	// not show the previous failure yet when a retry fails within a second,
	// so the same warning was sent again. What was last warned about is
	// also kept in memory (cleared by a success, see setFailures).
	r.mu.Lock()
	if r.warned[key] == reason+"\n"+err.Error() {
		changed = false
	} else if werr == nil && gs != nil && changed {
		r.warned[key] = reason + "\n" + err.Error()
	}
	r.mu.Unlock()
	if werr == nil && gs != nil && changed {
		r.Recorder.Eventf(gs, nil, corev1.EventTypeWarning, reason, "Sync", "%s", err.Error())
	}
	return werr
}

// auth returns the credentials of the GitSync's secretRef, read at most
// every authRefreshAge unless refresh is set.
func (r *Reconciler) auth(ctx context.Context, gs *v1alpha1.GitSync, refresh bool) (*source.Auth, error) {
	ref := gs.Spec.Source.SecretRef
	if ref == nil {
		return nil, nil
	}
	key := client.ObjectKeyFromObject(gs)
	r.mu.Lock()
	e, ok := r.auths[key]
	r.mu.Unlock()
	stale := !ok || e.secret != ref.Name || time.Since(e.fetched) > authRefreshAge ||
		resyncValue(gs) != gs.Status.LastHandledResyncAt
	if !refresh && !stale {
		return e.auth, nil
	}
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: gs.Namespace, Name: ref.Name}, secret); err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", gs.Namespace, ref.Name, err)
	}
	auth, err := source.AuthFromSecret(secret.Data)
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s: %w", gs.Namespace, ref.Name, err)
	}
	r.mu.Lock()
	r.auths[key] = authEntry{secret: ref.Name, auth: auth, fetched: time.Now()}
	r.mu.Unlock()
	return auth, nil
}

func (r *Reconciler) addFailure(key types.NamespacedName) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures[key]++
	return r.failures[key]
}

func (r *Reconciler) setFailures(key types.NamespacedName, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n == 0 {
		delete(r.failures, key)
		delete(r.warned, key)
		return
	}
	r.failures[key] = n
}

// forget drops everything kept in memory for a GitSync that is gone.
func (r *Reconciler) forget(key types.NamespacedName) {
	r.runner.cancel(key)
	forgetMetrics(key)
	if r.Drift != nil {
		r.Drift.Forget(drift.Owner{Name: key.Name, Namespace: key.Namespace})
	}
	if r.Reporter != nil {
		r.Reporter.Forget(key.Namespace, key.Name)
	}
	r.mu.Lock()
	delete(r.failures, key)
	delete(r.auths, key)
	delete(r.done, key)
	delete(r.warned, key)
	r.mu.Unlock()
}

func ptr[T any](v T) *T { return &v }

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// applierFor is the applier a GitSync's sync uses: one impersonating the
// service account serviceAccount picks, or the agent's own for a GitSync of
// the agent's namespace that names none.
func (r *Reconciler) applierFor(gs *v1alpha1.GitSync) (Applier, error) {
	sa, err := r.serviceAccount(gs)
	if err != nil {
		return nil, err
	}
	if sa == "" {
		return r.Applier, nil
	}
	if r.ApplierFor == nil {
		// Never fall back to the agent's rights for a service account.
		return nil, fmt.Errorf("GitSync %s/%s: cannot act as service account %s: this agent has no impersonating applier", gs.Namespace, gs.Name, sa)
	}
	return r.ApplierFor(gs.Namespace, sa)
}
