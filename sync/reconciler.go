package sync

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	crsource "sigs.k8s.io/controller-runtime/pkg/source"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/drift"
)

// Finalizer lets a GitSync with prune enabled delete what it applied when
// the GitSync itself is deleted.
const Finalizer = "tether.dev/finalizer"

// Reconciler reconciles GitSync objects. One reconcile of a GitSync runs
// its whole pipeline synchronously (see Reconcile); controller-runtime's
// workers are the only concurrency limit and its rate-limited work queue
// the only retry mechanism.
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
	// Concurrency is how many GitSyncs reconcile at once: the controller's
	// workers (default 4).
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

	stages   *Stages
	status   *statusWriter
	inflight inflight
	// ownerOf maps an object to the GitSync that applied it (OwnerOf).
	ownerOf func(kind, namespace, name string) (drift.Owner, bool)
	kick    chan event.GenericEvent
}

// SetupWithManager registers the reconciler with mgr.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.init()
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.GitSync{}, dependsOnIndex, indexDependsOn); err != nil {
		return fmt.Errorf("index GitSyncs by dependency: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("gitsync").
		Watches(&v1alpha1.GitSync{}, r.gitSyncEvents()).
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
		WithOptions(controller.Options{MaxConcurrentReconciles: r.concurrency(), SkipNameValidation: ptr(true)}).
		Complete(r)
}

func (r *Reconciler) init() {
	r.stages = &Stages{Source: r.Source, Renderer: r.Renderer, Credentials: NewCredentials(r.APIReader, DefaultCredentialsTTL)}
	r.status = &statusWriter{client: r.Client, reader: r.APIReader, reporter: r.Reporter}
	r.kick = make(chan event.GenericEvent, 1024)
}

// gitSyncEvents enqueues a GitSync on creation, on a change of its spec or
// annotations, and on deletion; status writes are not work. Newer work —
// another generation or resync value, a deletion — also cancels the
// reconcile running for the GitSync ("latest wins").
func (r *Reconciler) gitSyncEvents() handler.EventHandler {
	add := func(q workqueue.TypedRateLimitingInterface[reconcile.Request], obj client.Object) {
		q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(q, e.Object)
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			gs, ok := e.ObjectNew.(*v1alpha1.GitSync)
			if !ok {
				return
			}
			old := e.ObjectOld
			deleting := gs.DeletionTimestamp != nil && old.GetDeletionTimestamp() == nil
			if gs.Generation == old.GetGeneration() && maps.Equal(gs.Annotations, old.GetAnnotations()) && !deleting {
				return
			}
			key := client.ObjectKeyFromObject(gs)
			if deleting {
				r.inflight.cancel(key)
			} else {
				r.inflight.supersede(key, workOf(gs))
			}
			add(q, gs)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.inflight.cancel(client.ObjectKeyFromObject(e.Object))
			add(q, e.Object)
		},
		GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(q, e.Object)
		},
	}
}

func (r *Reconciler) concurrency() int {
	if r.Concurrency > 0 {
		return r.Concurrency
	}
	return 4
}

// SyncNow asks for an immediate reconcile of one GitSync, as a webhook or
// the hub's "sync now" does: a sync running for it now is cancelled, and
// the new reconcile lists the ref again.
func (r *Reconciler) SyncNow(key types.NamespacedName) {
	r.inflight.cancel(key)
	r.enqueue(key)
}

// enqueue asks for a reconcile of key without cancelling a running one:
// the drift tracker's notifications, which the running sync covers.
func (r *Reconciler) enqueue(key types.NamespacedName) {
	gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace}}
	select {
	case r.kick <- event.GenericEvent{Object: gs}:
	default: // the queue is full of kicks already; the next one will do
	}
}

// Reconcile runs one GitSync's pipeline, top to bottom and synchronously:
// source (resolve the ref) → decide → dependencies and time gates → sync
// (checkout → render → plan → apply → prune → health → status and events)
// or, when there is nothing new, the drift stage (check and correct). The
// whole pipeline runs under the GitSync's timeout and is cancelled when
// newer work for the GitSync arrives. Its result is the next poll, the
// backoff after a failure, or an error for the work queue's rate-limited
// retry (an API request that failed).
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
	ctx, done := r.inflight.begin(ctx, key, workOf(gs))
	defer done()
	log := logr.FromContextOrDiscard(ctx).WithValues("gitsync", key.String())
	ctx = logr.NewContext(ctx, log)

	if !gs.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, gs)
	}
	// current: gs is the API server's newest, as a write just returned it.
	current := false
	if gs.Spec.Prune && !controllerutil.ContainsFinalizer(gs, Finalizer) {
		patch := client.MergeFrom(gs.DeepCopy())
		controllerutil.AddFinalizer(gs, Finalizer)
		if err := r.Client.Patch(ctx, gs, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("GitSync %s: add finalizer: %w", key, err)
		}
		current = true
	}
	if gs.Spec.Suspend {
		log.V(1).Info("suspended")
		return ctrl.Result{}, r.markSuspended(ctx, gs)
	}
	if err := r.validate(gs); err != nil {
		_, werr := r.fail(ctx, key, asStageError(err, v1alpha1.ReasonInvalidSpec, true), handledResync(gs))
		return ctrl.Result{}, werr
	}
	ctx, cancel := context.WithTimeout(ctx, timeout(gs))
	defer cancel()

	// Source: list the ref (a cached listing when one is fresh enough).
	rev, auth, err := r.stages.Resolve(ctx, gs)
	if err != nil {
		if superseded(ctx) {
			return ctrl.Result{}, nil
		}
		// Git is unreachable or refuses us; the cluster can still drift.
		r.driftStage(ctx, gs)
		return r.failed(ctx, gs, asStageError(err, v1alpha1.ReasonFetchFailed, false))
	}

	why := decide(gs, rev.String())
	if why == whyNone && r.Drift != nil && !r.Drift.Tracking(driftOwner(gs)) {
		// The agent (re)started: apply once to learn what is applied.
		why = whyUntracked
	}
	if why == whyNone {
		// Only caches were read so far: no API request when nothing moved.
		return r.driftStage(ctx, gs), nil
	}
	if err := r.checkDependencies(ctx, gs); err != nil {
		var de *dependencyError
		cycle := errors.As(err, &de) && de.cycle
		reason := v1alpha1.ReasonDependencyNotReady
		if cycle {
			reason = v1alpha1.ReasonDependencyCycle
		}
		if _, werr := r.fail(ctx, key, &StageError{Reason: reason, User: cycle, Err: err}); werr != nil {
			return ctrl.Result{}, werr
		}
		return ctrl.Result{RequeueAfter: min(nextPoll(gs), retryInterval(gs))}, nil
	}
	pol, _ := policy(gs) // validated above
	b, scheduled := timeGate(gs, pol, r.now(), why)
	if b != nil {
		return r.holdBack(ctx, gs, b, rev.String())
	}
	return r.sync(logr.NewContext(ctx, log.WithValues("revision", rev.String())), gs, current, rev, auth, why, scheduled)
}

// holdBack records that a schedule or a sync window keeps rev from being
// applied, runs the drift stage meanwhile (correction waits for the
// windows too) and looks again when the block may end.
func (r *Reconciler) holdBack(ctx context.Context, gs *v1alpha1.GitSync, b *blocked, rev string) (ctrl.Result, error) {
	if !sameBlock(gs, b, rev) {
		if _, err := r.status.patch(ctx, client.ObjectKeyFromObject(gs), func(live *v1alpha1.GitSync) { markBlocked(live, b, rev) }); err != nil {
			return ctrl.Result{}, err
		}
		logr.FromContextOrDiscard(ctx).Info("sync held back", "revision", rev, "reason", b.reason, "message", b.msg)
	}
	res := r.driftStage(ctx, gs)
	after := res.RequeueAfter
	if !b.until.IsZero() {
		after = min(after, time.Until(b.until)+time.Second)
	}
	return ctrl.Result{RequeueAfter: max(after, time.Second)}, nil
}

// failed records a failure that happened before a sync started and asks
// for the next attempt after the backoff the status implies.
func (r *Reconciler) failed(ctx context.Context, gs *v1alpha1.GitSync, se *StageError) (ctrl.Result, error) {
	logr.FromContextOrDiscard(ctx).Error(se.Err, "sync not started", "reason", se.Reason)
	updated, err := r.fail(ctx, client.ObjectKeyFromObject(gs), se, handledResync(gs))
	if err != nil {
		return ctrl.Result{}, err
	}
	if updated == nil {
		return ctrl.Result{}, nil // deleted meanwhile
	}
	return ctrl.Result{RequeueAfter: backoff(updated, r.now())}, nil
}

// fail writes a failed Ready condition and a warning event, once per
// distinct failure: whether the failure is news is decided on the status
// being patched, which the optimistic lock guarantees is the newest. It
// returns the GitSync as written (nil when it is gone).
// also, when given, changes the status in the same write, before the
// failure is marked.
func (r *Reconciler) fail(ctx context.Context, key types.NamespacedName, se *StageError, also ...func(*v1alpha1.GitSync)) (*v1alpha1.GitSync, error) {
	var news bool
	msg := se.Err.Error()
	gs, err := r.status.patch(context.WithoutCancel(ctx), key, func(gs *v1alpha1.GitSync) {
		news = !sameFailure(gs, se.Reason, msg)
		for _, f := range also {
			f(gs)
		}
		markFailed(gs, se.Reason, se.Err, se.User)
	})
	if err == nil && gs != nil && news {
		r.Recorder.Eventf(gs, nil, corev1.EventTypeWarning, se.Reason, "Sync", "%s", msg)
	}
	return gs, err
}

// handledResync echoes the resync value of gs into the status being
// written: a resync that failed before a sync could start (the ref cannot be
// listed, the spec is invalid) was handled all the same, and whoever waits
// for it (`tether reconcile`) learns of the failure at once.
func handledResync(gs *v1alpha1.GitSync) func(*v1alpha1.GitSync) {
	v := resyncValue(gs)
	return func(st *v1alpha1.GitSync) {
		if resyncValue(st) == v {
			st.Status.LastHandledResyncAt = v
		}
	}
}

// markSuspended makes Ready say that the GitSync is suspended, keeping its
// status (True or False) as the last sync left it: `kubectl get` then
// shows why nothing moves instead of a stale success or failure message.
func (r *Reconciler) markSuspended(ctx context.Context, gs *v1alpha1.GitSync) error {
	ready := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition)
	if ready != nil && ready.Reason == v1alpha1.ReasonSuspended && ready.ObservedGeneration == gs.Generation {
		return nil
	}
	_, err := r.status.patch(ctx, client.ObjectKeyFromObject(gs), func(st *v1alpha1.GitSync) {
		status := metav1.ConditionUnknown
		if c := meta.FindStatusCondition(st.Status.Conditions, v1alpha1.ReadyCondition); c != nil {
			status = c.Status
		}
		msg := "Suspended: no syncs until spec.suspend is false"
		if st.Status.LastAppliedRevision != "" {
			msg += "; last applied " + st.Status.LastAppliedRevision
		}
		setCondition(st, v1alpha1.ReadyCondition, status, v1alpha1.ReasonSuspended, msg)
		meta.RemoveStatusCondition(&st.Status.Conditions, v1alpha1.ReconcilingCondition)
		st.Status.ObservedGeneration = st.Generation
	})
	return err
}

// asStageError returns err as a *StageError, with reason and user when it
// is not one.
func asStageError(err error, reason string, user bool) *StageError {
	var se *StageError
	if errors.As(err, &se) {
		return se
	}
	return &StageError{Reason: reason, User: user, Err: err}
}

// forget drops everything kept in memory for a GitSync that is gone or
// going. (Its deletion already cancelled a reconcile running for it.)
func (r *Reconciler) forget(key types.NamespacedName) {
	forgetMetrics(key)
	if r.Drift != nil {
		r.Drift.Forget(drift.Owner{Name: key.Name, Namespace: key.Namespace})
	}
	if r.Reporter != nil {
		r.Reporter.Forget(key.Namespace, key.Name)
	}
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
