package sync

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/sync/window"
)

// policy compiles the GitSync's schedule and sync windows.
func policy(gs *v1alpha1.GitSync) (*window.Compiled, error) {
	p := window.Policy{Schedule: gs.Spec.Schedule, TimeZone: gs.Spec.TimeZone}
	for _, w := range gs.Spec.Windows {
		p.Windows = append(p.Windows, window.Window{Kind: w.Kind, Schedule: w.Schedule, Duration: w.Duration.Duration, ManualSync: w.ManualSync})
	}
	return window.Compile(p)
}

// blocked is why a sync may not apply now.
type blocked struct {
	reason string
	msg    string
	// until is when to look again (zero: at the next poll).
	until time.Time
}

// timeGate decides whether the schedule and the sync windows let gs apply
// at now, for a sync of reason why. The schedule holds back new revisions
// and spec changes; a resync, a retry or a re-apply after an agent restart
// only answers to the windows. On success it returns the schedule time the
// sync stands for (zero when the schedule played no part).
func timeGate(gs *v1alpha1.GitSync, c *window.Compiled, now time.Time, why string) (*blocked, time.Time) {
	// decide reports a GitSync that never synced as whyNew even when its
	// resync annotation asks for a sync: an unhandled resync value makes
	// that first sync a manual one, so that the schedule (or a manualSync
	// window) does not hold back what was asked for by hand.
	manual := why == whyResync || (why == whyNew && resyncValue(gs) != gs.Status.LastHandledResyncAt)
	var scheduled time.Time
	if c.HasSchedule() && !manual && (why == whyNew || why == whyRevision || why == whySpec) {
		last := gs.CreationTimestamp.Time
		if gs.Status.LastScheduledTime != nil {
			last = gs.Status.LastScheduledTime.Time
		}
		if !c.Due(last, now) {
			next := c.NextScheduled(now)
			return &blocked{reason: v1alpha1.ReasonNotScheduled, until: next,
				msg: fmt.Sprintf("waiting for the schedule %q: next run at %s", gs.Spec.Schedule, next.UTC().Format(time.RFC3339))}, time.Time{}
		}
		scheduled = latestScheduled(c, last, now)
	}
	return windowGate(c, now, manual), scheduled
}

// windowGate decides whether the sync windows let anything be applied at
// now; manual is a resync asked for by hand.
func windowGate(c *window.Compiled, now time.Time, manual bool) *blocked {
	if d := c.Decide(now, manual); !d.Allowed {
		msg := "sync window closed: " + d.Blocking
		if !d.NextOpen.IsZero() {
			msg += "; next open at " + d.NextOpen.UTC().Format(time.RFC3339)
		}
		return &blocked{reason: v1alpha1.ReasonSyncWindowClosed, msg: msg, until: d.NextOpen}
	}
	return nil
}

// latestScheduled is the last schedule time in (last, now].
func latestScheduled(c *window.Compiled, last, now time.Time) time.Time {
	t := c.NextScheduled(last)
	for i := 0; i < 100000; i++ {
		n := c.NextScheduled(t)
		if n.IsZero() || n.After(now) {
			break
		}
		t = n
	}
	return t
}

// sameBlock reports whether the status already says exactly this.
func sameBlock(gs *v1alpha1.GitSync, b *blocked, rev string) bool {
	c := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.BlockedCondition)
	pending := ""
	if rev != gs.Status.LastAppliedRevision {
		pending = rev
	}
	return c != nil && c.Status == metav1.ConditionTrue && c.Reason == b.reason && c.Message == b.msg &&
		gs.Status.PendingRevision == pending
}

// markBlocked records that rev waits for the schedule or a window.
func markBlocked(gs *v1alpha1.GitSync, b *blocked, rev string) {
	setCondition(gs, v1alpha1.BlockedCondition, metav1.ConditionTrue, b.reason, b.msg)
	gs.Status.PendingRevision = ""
	if rev != gs.Status.LastAppliedRevision {
		gs.Status.PendingRevision = rev
	}
	gs.Status.NextSyncTime = nil
	if !b.until.IsZero() {
		t := metav1.NewTime(b.until)
		gs.Status.NextSyncTime = &t
	}
}

// clearBlocked removes what markBlocked set, once a sync goes ahead.
func clearBlocked(gs *v1alpha1.GitSync) {
	meta.RemoveStatusCondition(&gs.Status.Conditions, v1alpha1.BlockedCondition)
	gs.Status.PendingRevision = ""
	gs.Status.NextSyncTime = nil
}

// dependencyKeys are the GitSyncs gs depends on.
func dependencyKeys(gs *v1alpha1.GitSync) []types.NamespacedName {
	keys := make([]types.NamespacedName, 0, len(gs.Spec.DependsOn))
	for _, d := range gs.Spec.DependsOn {
		ns := d.Namespace
		if ns == "" {
			ns = gs.Namespace
		}
		keys = append(keys, types.NamespacedName{Namespace: ns, Name: d.Name})
	}
	return keys
}

// dependencyError is a dependency that is not Ready at its latest
// revision, or a cycle (a user error).
type dependencyError struct {
	cycle bool
	msg   string
}

func (e *dependencyError) Error() string { return e.msg }

// checkDependencies returns nil when every dependency of gs is Ready at
// the revision it last attempted; it reports a cycle rather than waiting
// for ever.
func (r *Reconciler) checkDependencies(ctx context.Context, gs *v1alpha1.GitSync) error {
	if len(gs.Spec.DependsOn) == 0 {
		return nil
	}
	if path := r.findCycle(ctx, client.ObjectKeyFromObject(gs)); path != nil {
		return &dependencyError{cycle: true, msg: "dependency cycle: " + strings.Join(path, " → ")}
	}
	for _, key := range dependencyKeys(gs) {
		dep := &v1alpha1.GitSync{}
		if err := r.Client.Get(ctx, key, dep); err != nil {
			return &dependencyError{msg: fmt.Sprintf("waiting for dependency %s: %v", key, err)}
		}
		ready := meta.FindStatusCondition(dep.Status.Conditions, v1alpha1.ReadyCondition)
		switch {
		case ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration != dep.Generation:
			why := "not Ready yet"
			if ready != nil && ready.Message != "" {
				why = "not Ready: " + ready.Message
			}
			return &dependencyError{msg: fmt.Sprintf("waiting for dependency %s (%s)", key, why)}
		case dep.Status.LastAppliedRevision != dep.Status.LastAttemptedRevision:
			return &dependencyError{msg: fmt.Sprintf("waiting for dependency %s to apply %s", key, dep.Status.LastAttemptedRevision)}
		}
	}
	return nil
}

// findCycle walks the dependency graph from start through the cache and
// returns the cycle through start as a path of names, or nil.
func (r *Reconciler) findCycle(ctx context.Context, start types.NamespacedName) []string {
	var path []string
	seen := map[types.NamespacedName]bool{}
	var walk func(key types.NamespacedName) bool
	walk = func(key types.NamespacedName) bool {
		path = append(path, key.String())
		if key == start && len(path) > 1 {
			return true
		}
		if seen[key] {
			path = path[:len(path)-1]
			return false
		}
		seen[key] = true
		gs := &v1alpha1.GitSync{}
		if err := r.Client.Get(ctx, key, gs); err == nil {
			for _, dep := range dependencyKeys(gs) {
				if walk(dep) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		return false
	}
	if walk(start) {
		return path
	}
	return nil
}

// dependsOnIndex indexes the agent's cache of GitSyncs by the GitSyncs
// each depends on ("namespace/name"), so that dependents reads only those.
const dependsOnIndex = "tether.dev/dependsOn"

// indexDependsOn is the index function of dependsOnIndex.
func indexDependsOn(obj client.Object) []string {
	gs, ok := obj.(*v1alpha1.GitSync)
	if !ok {
		return nil
	}
	keys := dependencyKeys(gs)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.String())
	}
	return out
}

// dependents maps a GitSync to the GitSyncs that depend on it, so that a
// dependency becoming Ready wakes them at once. It runs on every event of
// every GitSync: through the index it reads only the dependents, where a
// list of all GitSyncs made a thousand GitSyncs cost a million copies
// (each of their status writes copied every other one).
func (r *Reconciler) dependents(ctx context.Context, obj client.Object) []types.NamespacedName {
	list := &v1alpha1.GitSyncList{}
	me := client.ObjectKeyFromObject(obj)
	if err := r.Client.List(ctx, list, client.MatchingFields{dependsOnIndex: me.String()}, client.UnsafeDisableDeepCopy); err != nil {
		logr.FromContextOrDiscard(ctx).Error(err, "cannot find the GitSyncs that depend on this one", "gitsync", me.String())
		return nil
	}
	out := make([]types.NamespacedName, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, client.ObjectKeyFromObject(&list.Items[i]))
	}
	return out
}
