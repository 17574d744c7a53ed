package sync

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/fluxcd/pkg/ssa"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/apply"
	"tether.dev/tether/source"
)

// sync runs one full sync of gs at rev: decide again on the newest
// GitSync (begin), then checkout → render → plan → apply → prune → health,
// then the status and an event. The progress is written with the first
// status write the sync makes (see begin).
// ctx is cancelled when newer work arrives: a cancelled sync never prunes,
// records the objects it did apply (so that a later sync can prune them)
// and leaves the rest of the status to the reconcile that follows.
// current says that gs is the API server's newest already.
func (r *Reconciler) sync(ctx context.Context, gs *v1alpha1.GitSync, current bool, rev source.Revision, auth *source.Auth, why string, scheduled time.Time) (ctrl.Result, error) {
	log := logr.FromContextOrDiscard(ctx)
	key := client.ObjectKeyFromObject(gs)
	start := time.Now()

	live, progress, err := r.begin(ctx, gs, current, rev, why, scheduled)
	proceed := progress != nil
	switch {
	case err != nil && superseded(ctx):
		return ctrl.Result{}, nil
	case err != nil:
		return ctrl.Result{}, err
	case live == nil:
		return ctrl.Result{}, nil // deleted meanwhile
	case !proceed && workOf(live) != workOf(gs):
		// The spec or resync value moved since the cache was read: the
		// watch brings that work, reconcile it instead.
		return ctrl.Result{Requeue: true}, nil
	case !proceed:
		// The cache had not shown that this work is done already.
		return r.driftStage(ctx, live), nil
	}
	log.Info("sync started", "reason", why)

	runCtx, stopWatch := r.watchSource(ctx, live, rev, auth)
	out, err := r.run(runCtx, live, rev, auth, progress)
	cancelled := err != nil && superseded(runCtx)
	stopWatch()
	if cancelled {
		observeSync(key, resultSuperseded, time.Since(start))
		log.Info("sync superseded by newer work before it finished")
		if out != nil && out.applied {
			r.recordInventory(ctx, key, out.inventory)
		}
		// The newer work: a watch event or "sync now" queued the key
		// already; a new commit found by watchSource did not.
		return ctrl.Result{Requeue: true}, nil
	}
	if err != nil {
		se := asStageError(err, v1alpha1.ReasonApplyFailed, false)
		if errors.Is(err, context.DeadlineExceeded) {
			se = &StageError{Reason: se.Reason, User: se.User, Err: fmt.Errorf("sync of %s timed out after %s: %w", rev, timeout(gs), se.Err)}
		}
		observeSync(key, se.Reason, time.Since(start))
		log.Error(se.Err, "sync failed", "reason", se.Reason)
		updated, werr := r.fail(ctx, key, se, progress, func(st *v1alpha1.GitSync) {
			// The resync was handled, even though it failed: echo it so
			// that the same value does not force sync after sync.
			st.Status.LastHandledResyncAt = resyncValue(live)
			if out != nil && out.applied {
				st.Status.Inventory = out.inventory
			}
		})
		if werr != nil {
			return ctrl.Result{}, werr
		}
		if updated == nil {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{RequeueAfter: backoff(updated, r.now())}, nil
	}
	observeSync(key, resultSuccess, time.Since(start))
	msg := fmt.Sprintf("Applied revision %s", rev)
	updated, err := r.status.patch(context.WithoutCancel(ctx), key, func(st *v1alpha1.GitSync) {
		progress(st) // when no write before the apply recorded it
		markSucceeded(st, rev.String(), msg)
		st.Status.ShortRevision = rev.ShortSHA()
		st.Status.LastHandledResyncAt = resyncValue(live)
		st.Status.LastAppliedHash = out.hash
		st.Status.ObservedGeneration = live.Generation
		if out.applied {
			st.Status.Inventory = out.inventory
			st.Status.Namespaces = out.namespaces
			now := metav1.Now()
			st.Status.LastSyncTime = &now
			if r.Drift != nil {
				markNoDrift(st, r.scaledNote(live)) // everything was just applied from Git
			}
		}
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	log.Info("sync finished", "applied", out.applied, "summary", out.summary, "duration", time.Since(start).Round(time.Millisecond).String())
	if updated != nil && (out.changed || live.Status.LastAppliedRevision != rev.String()) {
		r.Recorder.Eventf(updated, nil, corev1.EventTypeNormal, v1alpha1.ReasonSucceeded, "Sync", "%s: %s", msg, out.summary)
	}
	return ctrl.Result{RequeueAfter: nextPoll(live)}, nil
}

// watchSource lists gs's ref at every interval while a sync of rev runs,
// and cancels the returned context when the ref has moved on: a new commit
// supersedes a sync that still applies (or waits for the health of) an
// older one, instead of queueing behind it. Listing costs no API request.
// stop ends the watch and waits for it.
func (r *Reconciler) watchSource(ctx context.Context, gs *v1alpha1.GitSync, rev source.Revision, auth *source.Auth) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	ref := SourceRef(gs)
	if ref.Commit != "" {
		return ctx, func() { cancel(nil) } // an exact commit never moves
	}
	var wg gosync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(interval(gs))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			now, err := r.Source.Resolve(ctx, gs.Spec.Source.URL, ref, auth)
			if err == nil && now != rev {
				logr.FromContextOrDiscard(ctx).Info("newer revision while syncing", "newer", now.String())
				cancel(errSuperseded)
				return
			}
		}
	})
	return ctx, func() {
		cancel(nil)
		wg.Wait()
	}
}

// begin decides again whether a sync of rev must run, on the newest
// GitSync: the decision of Reconcile was made on the cache, which may not
// show the status the last sync wrote yet, and the inventory a sync owns
// and prunes from must be the newest. One metadata-only read from the API
// server tells whether the cache is current (almost always); only when it
// is not is the whole GitSync read. begin writes nothing: the progress it
// returns goes into the first status write of the sync, which the sync
// makes before applying only when it creates objects the inventory lacks
// (see ownBeforeApply) or waits for health, and otherwise at its end. A
// sync with nothing new to own thus writes status once. It returns the
// GitSync as read (nil when it is gone) and, when the sync must go ahead,
// the progress to record; nil when not. current says that gs is the API
// server's newest already (a write just returned it): then begin reads
// nothing.
func (r *Reconciler) begin(ctx context.Context, gs *v1alpha1.GitSync, current bool, rev source.Revision, why string, scheduled time.Time) (*v1alpha1.GitSync, func(*v1alpha1.GitSync), error) {
	live := gs
	if !current {
		var err error
		if live, err = r.status.fresh(ctx, gs); err != nil || live == nil || workOf(live) != workOf(gs) {
			return live, nil, err
		}
	}
	w := decide(live, rev.String())
	if w == whyNone && why == whyUntracked {
		w = why
	}
	if w == whyNone {
		return live, nil, nil
	}
	progress := func(st *v1alpha1.GitSync) {
		markProgressing(st, rev.String(), w)
		clearBlocked(st)
		if !scheduled.IsZero() {
			t := metav1.NewTime(scheduled)
			st.Status.LastScheduledTime = &t
		}
	}
	return live, progress, nil
}

// recordInventory writes the inventory of a sync that stopped after it
// applied objects, so that a later sync prunes them when they leave Git.
// also, when given, changes the status in the same write.
func (r *Reconciler) recordInventory(ctx context.Context, key types.NamespacedName, inv *v1alpha1.ResourceInventory, also ...func(*v1alpha1.GitSync)) {
	if _, err := r.status.patch(context.WithoutCancel(ctx), key, func(st *v1alpha1.GitSync) {
		for _, f := range also {
			f(st)
		}
		st.Status.Inventory = inv
	}); err != nil {
		logr.FromContextOrDiscard(ctx).Error(err, "cannot record applied objects")
	}
}

// outcome is what a run did. When applied is set, inventory is what the
// GitSync owns now, also after a failure: until prune has run, what it
// owned before plus what this run applied (or may have: every object of
// the plan, when the apply stopped early); after prune, what it applied.
type outcome struct {
	hash       string
	applied    bool // false when the render matched the last applied one
	changed    bool // anything created, configured or deleted
	inventory  *v1alpha1.ResourceInventory
	namespaces []v1alpha1.NamespaceCount
	summary    string
}

// run is the sync's checkout → render → plan → apply → prune → health;
// progress marks the status of a sync in progress, in the writes it makes
// before its end.
func (r *Reconciler) run(ctx context.Context, gs *v1alpha1.GitSync, rev source.Revision, auth *source.Auth, progress func(*v1alpha1.GitSync)) (*outcome, error) {
	dir, err := r.stages.Checkout(ctx, gs, rev, auth)
	if err != nil {
		return nil, err
	}
	res, err := r.stages.Render(ctx, gs, dir, rev)
	if err != nil {
		return nil, err
	}
	if len(res.Objects) == 0 && !gs.Spec.AllowEmpty && gs.Status.Inventory != nil && len(gs.Status.Inventory.Entries) > 0 {
		// resources: [] or a wrong spec.path would otherwise prune all.
		return nil, &StageError{Reason: v1alpha1.ReasonEmptyRender, User: true,
			Err: fmt.Errorf("%s at %s rendered no objects while %d applied objects are in the inventory; nothing applied or pruned (set spec.allowEmpty to let an empty render prune everything)", displayPath(gs.Spec.Path), rev, len(gs.Status.Inventory.Entries))}
	}
	out := &outcome{hash: res.Hash}
	if unchangedRender(gs, res.Hash) && (r.Drift == nil || r.Drift.Tracking(driftOwner(gs))) {
		out.summary = "rendered objects unchanged, nothing applied"
		return out, nil
	}

	applier, err := r.applierFor(gs)
	if err != nil {
		return nil, asStageError(err, v1alpha1.ReasonApplyFailed, false)
	}
	plan, err := Plan(ctx, applier, gs, res.Objects)
	if err != nil {
		return nil, err
	}
	if r.Drift != nil {
		// The watch echoes of our own apply are not drift.
		release := r.Drift.Hold(driftOwner(gs))
		defer release()
		if r.Drift.Tracking(driftOwner(gs)) {
			// What is exactly as the last apply left it is not sent again:
			// a forced resync with nothing changed costs no request.
			plan.Options.Skip = r.Drift.Unchanged(driftOwner(gs))
		}
	}
	prerecorded, err := r.ownBeforeApply(ctx, gs, plan, progress)
	if err != nil {
		return nil, err
	}
	result, err := applier.Apply(ctx, plan)
	if err != nil {
		// Own what was written, so that a later sync prunes it when it
		// leaves Git: what the change set reports, and when the apply was
		// stopped (newer work, the timeout) every object of the plan, as a
		// request in flight then may have been written without its answer
		// arriving. Owning one that was not written costs nothing: prune
		// skips what is gone. A plain failure reports all it wrote, and
		// objects refused (e.g. forbidden) must not be owned: prune could
		// not even read them.
		var cs *ssa.ChangeSet
		if result != nil {
			cs = result.ChangeSet
		}
		out.inventory = apply.AddChangeSet(gs.Status.Inventory, cs)
		var lost *url.Error
		if ctx.Err() != nil || errors.As(err, &lost) {
			// A request that got no answer (stopped, or the connection
			// broke) may have been written all the same.
			out.inventory = unionInventory(out.inventory, plan.Inventory())
		}
		// An inventory of no entries is refused by the CRD, and nothing
		// was owned nor written then; when ownBeforeApply recorded more,
		// the status must forget that again.
		out.applied = len(out.inventory.Entries) > 0 || prerecorded
		if len(out.inventory.Entries) == 0 {
			out.inventory = nil
		}
		return out, applyError(err)
	}
	out.applied = true
	out.inventory = unionInventory(gs.Status.Inventory, result.Inventory)
	if err := ctx.Err(); err != nil {
		// Superseded or timed out after the apply: never prune on what
		// may no longer be the newest state.
		return out, err
	}
	out.changed = result.Changed
	out.namespaces = result.Namespaces
	counts := countActions(result.ChangeSet)

	if gs.Spec.Prune && gs.Status.Inventory != nil {
		pruned, err := applier.Prune(ctx, gs.Status.Inventory, result.Inventory, ownerOf(gs))
		if err != nil {
			return out, &StageError{Reason: v1alpha1.ReasonPruneFailed, Err: err}
		}
		r.reportKept(gs, pruned.Kept)
		deleted := countActions(pruned.ChangeSet)[ssa.DeletedAction]
		counts[ssa.DeletedAction] += deleted
		out.changed = out.changed || deleted > 0
	}
	out.inventory = result.Inventory
	out.summary = summarize(counts)
	if gs.Spec.Wait {
		// The wait can be long and end in a failure, a timeout or newer
		// work: record what is in the cluster now, so that even an agent
		// killed meanwhile leaves an inventory that can prune it later.
		r.recordInventory(ctx, client.ObjectKeyFromObject(gs), result.Inventory, progress)
		if err := applier.Wait(ctx, result.Inventory, 0); err != nil {
			return out, &StageError{Reason: v1alpha1.ReasonHealthCheckFailed, Err: fmt.Errorf("health check of %s: %w", rev, err)}
		}
		out.summary += ", all objects ready"
	}
	if r.Drift != nil {
		// From now on the watch cache compares the cluster with this apply.
		if err := r.Drift.Record(ctx, driftOwner(gs), plan.Objects, result.Live); err != nil {
			return out, &StageError{Reason: v1alpha1.ReasonApplyFailed, Err: fmt.Errorf("record applied objects for drift detection: %w", err)}
		}
	}
	return out, nil
}

// ownBeforeApply records, before anything is written, that gs owns every
// object of plan it did not own yet, and reports whether it wrote. An agent
// killed in the middle of the apply records nothing afterwards: without
// this, objects it created and that then left Git would carry the owner
// labels of gs for good, as no inventory names them for prune. An object
// owned here but never created costs nothing (prune skips what is gone);
// when the apply fails, the status gets the exact inventory again. The
// same write marks the sync in progress (progress); a plan with nothing
// new to own writes nothing here.
func (r *Reconciler) ownBeforeApply(ctx context.Context, gs *v1alpha1.GitSync, plan *apply.Plan, progress func(*v1alpha1.GitSync)) (bool, error) {
	have := map[string]bool{}
	if gs.Status.Inventory != nil {
		for _, e := range gs.Status.Inventory.Entries {
			have[e.ID] = true
		}
	}
	planned := plan.Inventory()
	news := false
	for _, e := range planned.Entries {
		if !have[e.ID] {
			news = true
			break
		}
	}
	if !news {
		return false, nil
	}
	if _, err := r.status.patch(ctx, client.ObjectKeyFromObject(gs), func(st *v1alpha1.GitSync) {
		progress(st)
		// Decided on the status being written (optimistic lock): what it
		// owns already stays owned.
		st.Status.Inventory = unionInventory(st.Status.Inventory, planned)
	}); err != nil {
		return false, &StageError{Reason: v1alpha1.ReasonApplyFailed, Err: fmt.Errorf("record the objects about to be applied: %w", err)}
	}
	return true, nil
}

// unionInventory is every entry of a and b, sorted by ID.
func unionInventory(a, b *v1alpha1.ResourceInventory) *v1alpha1.ResourceInventory {
	out := &v1alpha1.ResourceInventory{Entries: []v1alpha1.ResourceRef{}}
	seen := map[string]bool{}
	for _, inv := range []*v1alpha1.ResourceInventory{a, b} {
		if inv == nil {
			continue
		}
		for _, e := range inv.Entries {
			if !seen[e.ID] {
				seen[e.ID] = true
				out.Entries = append(out.Entries, e)
			}
		}
	}
	slices.SortFunc(out.Entries, func(x, y v1alpha1.ResourceRef) int { return strings.Compare(x.ID, y.ID) })
	return out
}

// reportKept warns, in an event each, of the Namespaces a prune left in
// place because they hold objects the GitSync never applied.
func (r *Reconciler) reportKept(gs *v1alpha1.GitSync, kept []apply.KeptNamespace) {
	for _, k := range kept {
		r.Recorder.Eventf(gs, nil, corev1.EventTypeWarning, v1alpha1.ReasonNamespaceKept, "Prune", "%s", k.Reason)
	}
}

// unchangedRender is true when the rendered objects are byte-for-byte those
// last applied, for the same spec, with no resync asked and the last sync
// healthy: a commit that touched other folders then costs no apply.
func unchangedRender(gs *v1alpha1.GitSync, hash string) bool {
	ready := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition)
	return hash != "" && hash == gs.Status.LastAppliedHash &&
		gs.Generation == gs.Status.ObservedGeneration &&
		resyncValue(gs) == gs.Status.LastHandledResyncAt &&
		ready != nil && ready.Status == metav1.ConditionTrue
}

func countActions(cs *ssa.ChangeSet) map[ssa.Action]int {
	counts := map[ssa.Action]int{}
	if cs == nil {
		return counts
	}
	for _, e := range cs.Entries {
		counts[e.Action]++
	}
	return counts
}

func summarize(counts map[ssa.Action]int) string {
	var parts []string
	for _, a := range []ssa.Action{ssa.CreatedAction, ssa.ConfiguredAction, ssa.UnchangedAction, ssa.DeletedAction, ssa.SkippedAction} {
		if n := counts[a]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, a))
		}
	}
	if len(parts) == 0 {
		return "no objects"
	}
	return strings.Join(parts, ", ")
}
