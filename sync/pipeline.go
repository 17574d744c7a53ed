package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fluxcd/pkg/ssa"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/apply"
	"tether.dev/tether/render"
	"tether.dev/tether/source"
)

// stageError is a failed pipeline stage: the condition reason to report and
// whether the user must change something before a retry can succeed.
type stageError struct {
	reason string
	user   bool
	err    error
}

func (e *stageError) Error() string { return e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

// sync runs one full sync of gs at rev: checkout, render, plan, apply,
// prune, then status and events. It runs in the runner, so a newer revision
// cancels ctx; a cancelled sync writes nothing and leaves the status to the
// sync that replaced it.
func (r *Reconciler) sync(ctx context.Context, gs *v1alpha1.GitSync, rev source.Revision, auth *source.Auth, why string, scheduled time.Time, w want) {
	log := logr.FromContextOrDiscard(ctx)
	key := client.ObjectKeyFromObject(gs)
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout(gs))
	defer cancel()

	live, err := r.status.patch(ctx, key, func(live *v1alpha1.GitSync) {
		markProgressing(live, rev.String(), why)
		clearBlocked(live)
		if !scheduled.IsZero() {
			t := metav1.NewTime(scheduled)
			live.Status.LastScheduledTime = &t
		}
	})
	if err != nil {
		log.Error(err, "cannot record progress")
	} else if live != nil {
		// Fix (with the inventory recorded before a health wait, see run):
		// the sync this one replaced may have recorded its inventory after
		// gs was read; prune from the newest one.
		gs.Status.Inventory = live.Status.Inventory
	}
	out, err := r.run(ctx, gs, rev, auth)
	if errors.Is(ctx.Err(), context.Canceled) {
		// Newer work replaced this sync, or the agent is stopping.
		log.Info("sync cancelled before it finished")
		return
	}
	if err != nil {
		var se *stageError
		if !errors.As(err, &se) {
			se = &stageError{reason: v1alpha1.ReasonApplyFailed, err: err}
		}
		if errors.Is(err, context.DeadlineExceeded) {
			se.err = fmt.Errorf("sync of %s timed out after %s: %w", rev, timeout(gs), se.err)
		}
		observeSync(key, se.reason, time.Since(start))
		n := r.addFailure(key)
		log.Error(se.err, "sync failed", "reason", se.reason, "failures", n)
		if werr := r.fail(context.WithoutCancel(ctx), key, se.reason, se.err, se.user, gs); werr != nil {
			log.Error(werr, "cannot record failure")
		}
		// The resync request was handled, even though it failed: echo it
		// so that the same value does not force sync after sync.
		r.recordResync(context.WithoutCancel(ctx), key, resyncValue(gs))
		r.kickAfter(key, backoff(gs, n))
		return
	}
	observeSync(key, "success", time.Since(start))
	r.setFailures(key, 0)
	r.setDone(key, w)
	msg := fmt.Sprintf("Applied revision %s", rev)
	updated, werr := r.status.patch(context.WithoutCancel(ctx), key, func(live *v1alpha1.GitSync) {
		markSucceeded(live, rev.String(), msg)
		live.Status.ShortRevision = rev.ShortSHA()
		live.Status.LastHandledResyncAt = resyncValue(gs)
		live.Status.LastAppliedHash = out.hash
		live.Status.ObservedGeneration = gs.Generation
		if out.applied {
			live.Status.Inventory = out.inventory
			live.Status.Namespaces = out.namespaces
			now := metav1.Now()
			live.Status.LastSyncTime = &now
			if r.Drift != nil {
				markNoDrift(live, r.scaledNote(gs)) // everything was just applied from Git
			}
		}
	})
	if werr != nil {
		log.Error(werr, "cannot record success")
		return
	}
	log.Info("sync finished", "applied", out.applied, "summary", out.summary, "duration", time.Since(start).Round(time.Millisecond).String())
	if updated != nil && (out.changed || gs.Status.LastAppliedRevision != rev.String()) {
		r.Recorder.Eventf(updated, nil, corev1.EventTypeNormal, v1alpha1.ReasonSucceeded, "Sync", "%s: %s", msg, out.summary)
	}
}

// outcome is what a successful run did.
type outcome struct {
	hash       string
	applied    bool // false when the render matched the last applied one
	changed    bool // anything created, configured or deleted
	inventory  *v1alpha1.ResourceInventory
	namespaces []v1alpha1.NamespaceCount
	summary    string
}

func (r *Reconciler) run(ctx context.Context, gs *v1alpha1.GitSync, rev source.Revision, auth *source.Auth) (*outcome, error) {
	dir, err := r.Source.Checkout(ctx, gs.Spec.Source.URL, rev, auth)
	if err != nil {
		return nil, &stageError{reason: v1alpha1.ReasonFetchFailed, user: !source.IsTransient(err), err: err}
	}
	res, err := r.Renderer.Render(ctx, render.Options{
		Root: dir, Path: gs.Spec.Path, AllowRemoteBases: gs.Spec.AllowRemoteBases, Substitute: gs.Spec.Substitute,
	})
	if err != nil {
		var re *render.Error
		return nil, &stageError{reason: v1alpha1.ReasonRenderFailed, user: errors.As(err, &re),
			err: fmt.Errorf("%s at %s: %w", displayPath(gs.Spec.Path), rev, err)}
	}
	if len(res.Objects) == 0 && !gs.Spec.AllowEmpty && gs.Status.Inventory != nil && len(gs.Status.Inventory.Entries) > 0 {
		// resources: [] or a wrong spec.path would otherwise prune all.
		return nil, &stageError{reason: v1alpha1.ReasonEmptyRender, user: true,
			err: fmt.Errorf("%s at %s rendered no objects while %d applied objects are in the inventory; nothing applied or pruned (set spec.allowEmpty to let an empty render prune everything)", displayPath(gs.Spec.Path), rev, len(gs.Status.Inventory.Entries))}
	}
	out := &outcome{hash: res.Hash}
	owner := ownerOf(gs)
	if unchangedRender(gs, res.Hash) && (r.Drift == nil || r.Drift.Tracking(driftOwner(gs))) {
		out.summary = "rendered objects unchanged, nothing applied"
		return out, nil
	}

	applier, err := r.applierFor(gs)
	if err != nil {
		return nil, &stageError{reason: v1alpha1.ReasonApplyFailed, err: err}
	}
	plan, err := applier.Plan(ctx, res.Objects, ApplyOptions(gs))
	if err != nil {
		reason := v1alpha1.ReasonApplyFailed
		if errors.Is(err, apply.ErrNamespaceNotAllowed) {
			reason = v1alpha1.ReasonNamespaceDenied
		}
		return nil, &stageError{reason: reason, user: apply.IsUserError(err), err: err}
	}
	if r.Drift != nil {
		// The watch echoes of our own apply are not drift.
		release := r.Drift.Hold(driftOwner(gs))
		defer release()
	}
	result, err := applier.Apply(ctx, plan)
	if err != nil {
		if result != nil && result.ChangeSet != nil && len(result.ChangeSet.Entries) > 0 {
			// Some groups were written before another failed: own them, so
			// that a later sync prunes them if they leave Git.
			inv := apply.AddChangeSet(gs.Status.Inventory, result.ChangeSet)
			if _, werr := r.status.patch(context.WithoutCancel(ctx), client.ObjectKeyFromObject(gs), func(live *v1alpha1.GitSync) {
				live.Status.Inventory = inv
			}); werr != nil {
				logr.FromContextOrDiscard(ctx).Error(werr, "cannot record partly applied objects")
			}
		}
		return nil, &stageError{reason: v1alpha1.ReasonApplyFailed, user: apply.IsUserError(err), err: err}
	}
	out.applied = true
	out.changed = result.Changed
	out.inventory = result.Inventory
	out.namespaces = result.Namespaces
	counts := countActions(result.ChangeSet)

	if gs.Spec.Prune && gs.Status.Inventory != nil {
		pruned, err := applier.Prune(ctx, gs.Status.Inventory, result.Inventory, owner)
		if err != nil {
			return nil, &stageError{reason: v1alpha1.ReasonPruneFailed, err: err}
		}
		r.reportKept(gs, pruned.Kept)
		deleted := countActions(pruned.ChangeSet)[ssa.DeletedAction]
		counts[ssa.DeletedAction] += deleted
		out.changed = out.changed || deleted > 0
	}
	out.summary = summarize(counts)
	if gs.Spec.Wait {
		// Fix (found by TestNewRevisionCancelsHealthWait): the inventory
		// was recorded only when the whole sync succeeded, so objects
		// applied by a sync whose health wait then failed, timed out or was
		// cancelled by a newer revision were missing from it, and the next
		// sync could not prune them when they left Git (they stayed in the
		// cluster for good). Record what is now in the cluster before the
		// (long) wait.
		if _, err := r.status.patch(context.WithoutCancel(ctx), client.ObjectKeyFromObject(gs), func(live *v1alpha1.GitSync) {
			live.Status.Inventory = result.Inventory
			live.Status.Namespaces = result.Namespaces
		}); err != nil {
			return nil, &stageError{reason: v1alpha1.ReasonApplyFailed, err: fmt.Errorf("record applied objects: %w", err)}
		}
		// A newer revision cancels ctx, which ends the wait at once.
		if err := applier.Wait(ctx, result.Inventory, 0); err != nil {
			return nil, &stageError{reason: v1alpha1.ReasonHealthCheckFailed, err: fmt.Errorf("health check of %s: %w", rev, err)}
		}
		out.summary += ", all objects ready"
	}
	if r.Drift != nil {
		// From now on the watch cache compares the cluster with this apply.
		if err := r.Drift.Record(ctx, driftOwner(gs), plan.Objects, result.Live); err != nil {
			return nil, &stageError{reason: v1alpha1.ReasonApplyFailed, err: fmt.Errorf("record applied objects for drift detection: %w", err)}
		}
	}
	return out, nil
}

// reportKept warns, in an event each, of the Namespaces a prune left in
// place because they hold objects the GitSync never applied.
func (r *Reconciler) reportKept(gs *v1alpha1.GitSync, kept []apply.KeptNamespace) {
	for _, k := range kept {
		r.Recorder.Eventf(gs, nil, corev1.EventTypeWarning, v1alpha1.ReasonNamespaceKept, "Prune", "%s", k.Reason)
	}
}

// ApplyOptions are the apply settings of gs, as a sync uses them (also for
// `tether diff`).
func ApplyOptions(gs *v1alpha1.GitSync) apply.Options {
	return apply.Options{
		Owner:             ownerOf(gs),
		TargetNamespace:   targetNamespace(gs),
		AllowedNamespaces: gs.Spec.AllowedNamespaces,
		Prune:             gs.Spec.Prune,
		Timeout:           timeout(gs),
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

func displayPath(p string) string {
	if p == "" {
		return "./"
	}
	return p
}

// recordResync echoes a handled resync value into the status.
func (r *Reconciler) recordResync(ctx context.Context, key client.ObjectKey, value string) {
	_, err := r.status.patch(ctx, key, func(live *v1alpha1.GitSync) { live.Status.LastHandledResyncAt = value })
	if err != nil {
		logr.FromContextOrDiscard(ctx).Error(err, "cannot record handled resync")
	}
}
