package sync

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/drift"
)

// driftOwner names a GitSync for the drift tracker.
func driftOwner(gs *v1alpha1.GitSync) drift.Owner {
	return drift.Owner{Name: gs.Name, Namespace: gs.Namespace}
}

func driftMode(gs *v1alpha1.GitSync) string {
	if gs.Spec.Drift.Mode == v1alpha1.DriftDetect {
		return v1alpha1.DriftDetect
	}
	return v1alpha1.DriftCorrect
}

func ignoreRules(gs *v1alpha1.GitSync) []drift.IgnoreRule {
	rules := make([]drift.IgnoreRule, 0, len(gs.Spec.Drift.Ignore))
	for _, r := range gs.Spec.Drift.Ignore {
		rules = append(rules, drift.IgnoreRule{Group: r.Group, Kind: r.Kind, Name: r.Name, Namespace: r.Namespace, Paths: r.Paths})
	}
	return rules
}

// scaledNote says, for the Drifted condition, which replicas fields drift
// ignores because an applied autoscaler scales them; "" when none.
func (r *Reconciler) scaledNote(gs *v1alpha1.GitSync) string {
	scaled := r.Drift.Scaled(driftOwner(gs))
	var parts []string
	for i, s := range scaled {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(scaled)-3))
			break
		}
		parts = append(parts, s.String())
	}
	return strings.Join(parts, "; ")
}

// withNote appends note to msg.
func withNote(msg, note string) string {
	if note == "" {
		return msg
	}
	return msg + "; " + note
}

// driftStage is the pipeline's stage for a reconcile that applies nothing
// new: when the drift tracker's watch cache saw an object of gs change
// (knowing that costs no API request), it checks whether it drifted,
// reports it and, in mode correct, re-applies what drifted — in this
// reconcile, under the worker limit and the sync timeout like any apply.
// It returns when to reconcile again: the next poll, or the retry interval
// when the check or the correction failed.
func (r *Reconciler) driftStage(ctx context.Context, gs *v1alpha1.GitSync) ctrl.Result {
	res := ctrl.Result{RequeueAfter: nextPoll(gs)}
	if r.Drift == nil || len(r.Drift.Suspects(driftOwner(gs))) == 0 {
		return res
	}
	if err := r.checkDrift(ctx, gs); err != nil && !superseded(ctx) {
		res.RequeueAfter = min(res.RequeueAfter, retryInterval(gs))
	}
	return res
}

// checkDrift decides whether the suspects of gs really drifted, reports
// it in the status and, in mode correct, re-applies the drifted objects as
// they were last applied (no fetch or render needed).
func (r *Reconciler) checkDrift(ctx context.Context, gs *v1alpha1.GitSync) error {
	log := logr.FromContextOrDiscard(ctx)
	owner := driftOwner(gs)
	report, err := r.Drift.Check(ctx, owner, ignoreRules(gs))
	if superseded(ctx) {
		return ctx.Err()
	}
	if err != nil {
		log.Error(err, "drift check failed")
		r.patchDrift(ctx, gs, func(live *v1alpha1.GitSync) {
			setCondition(live, v1alpha1.DriftedCondition, metav1.ConditionUnknown, v1alpha1.ReasonDriftCheckFailed, err.Error())
		})
		return err
	}
	note := r.scaledNote(gs)
	if report.Count == 0 {
		r.patchDrift(ctx, gs, func(live *v1alpha1.GitSync) { markNoDrift(live, note) })
		return nil
	}

	now := metav1.Now()
	objects := driftedObjects(report, now)
	msg := driftMessage(report)
	log.Info("drift detected", "objects", report.Count, "mode", driftMode(gs))
	// detected records the drift as found; a correction's write records it
	// too, so that a correction writes status once.
	var news bool
	detected := func(live *v1alpha1.GitSync) {
		// Decided on the status being patched (optimistic lock): the
		// cache may not show the last check's write yet.
		prev := live.Status.Drift
		news = !sameDrift(prev, objects)
		setCondition(live, v1alpha1.DriftedCondition, metav1.ConditionTrue, v1alpha1.ReasonDriftDetected, withNote(msg, note))
		live.Status.Drift = &v1alpha1.DriftStatus{Count: report.Count, Objects: objects, LastDetectedTime: &now}
		if prev != nil {
			live.Status.Drift.LastCorrectedTime = prev.LastCorrectedTime
		}
	}
	// warn tells of drift the last status did not show already.
	warn := func(updated *v1alpha1.GitSync) {
		if updated != nil && news {
			r.Recorder.Eventf(updated, nil, corev1.EventTypeWarning, v1alpha1.ReasonDriftDetected, "DetectDrift", "%s", msg)
		}
	}
	hold := ""
	if driftMode(gs) == v1alpha1.DriftCorrect {
		if pol, err := policy(gs); err == nil {
			if b := windowGate(pol, r.now(), false); b != nil {
				hold = b.msg
			}
		}
	}
	if driftMode(gs) != v1alpha1.DriftCorrect || hold != "" {
		if hold != "" {
			log.Info("drift correction held back by a sync window", "message", hold)
		}
		warn(r.patchDrift(ctx, gs, detected))
		return nil
	}

	ids := make([]string, 0, report.Count)
	for _, o := range report.Drifted {
		ids = append(ids, o.ID)
	}
	if err := r.correct(ctx, gs, ids); err != nil {
		if superseded(ctx) {
			return err
		}
		log.Error(err, "drift correction failed")
		updated := r.patchDrift(ctx, gs, func(live *v1alpha1.GitSync) {
			detected(live)
			setCondition(live, v1alpha1.DriftedCondition, metav1.ConditionTrue, v1alpha1.ReasonApplyFailed, "correcting drift failed: "+err.Error())
		})
		warn(updated)
		if updated != nil {
			r.Recorder.Eventf(updated, nil, corev1.EventTypeWarning, v1alpha1.ReasonApplyFailed, "CorrectDrift", "correcting drift failed: %s", err.Error())
		}
		return err
	}
	corrected := metav1.Now()
	for i := range objects {
		objects[i].Corrected = true
	}
	done := fmt.Sprintf("re-applied %d drifted object(s) from %s", report.Count, gs.Status.LastAppliedRevision)
	updated := r.patchDrift(ctx, gs, func(live *v1alpha1.GitSync) {
		detected(live)
		setCondition(live, v1alpha1.DriftedCondition, metav1.ConditionFalse, v1alpha1.ReasonDriftCorrected, withNote(done, note))
		live.Status.Drift = &v1alpha1.DriftStatus{Count: 0, Objects: objects, LastDetectedTime: &now, LastCorrectedTime: &corrected}
	})
	warn(updated)
	if updated != nil {
		r.Recorder.Eventf(updated, nil, corev1.EventTypeNormal, v1alpha1.ReasonDriftCorrected, "CorrectDrift", "%s", done)
	}
	observeDriftCorrected(client.ObjectKeyFromObject(gs), report.Count)
	log.Info("drift corrected", "objects", report.Count)
	return nil
}

// correct re-applies the recorded objects ids of gs and records the
// versions the apply produced.
func (r *Reconciler) correct(ctx context.Context, gs *v1alpha1.GitSync, ids []string) error {
	owner := driftOwner(gs)
	objs, err := r.Drift.Applied(owner, ids)
	if err != nil {
		return err
	}
	applier, err := r.applierFor(gs)
	if err != nil {
		return err
	}
	release := r.Drift.Hold(owner)
	defer release()
	plan, err := Plan(ctx, applier, gs, objs)
	if err != nil {
		return err
	}
	res, err := applier.Apply(ctx, plan)
	if err != nil {
		return err
	}
	return r.Drift.Update(ctx, owner, plan.Objects, res.Live)
}

// patchDrift writes drift status, logging a failure; it returns the
// updated GitSync or nil.
func (r *Reconciler) patchDrift(ctx context.Context, gs *v1alpha1.GitSync, mutate func(*v1alpha1.GitSync)) *v1alpha1.GitSync {
	updated, err := r.status.patch(context.WithoutCancel(ctx), client.ObjectKeyFromObject(gs), mutate)
	if err != nil {
		logr.FromContextOrDiscard(ctx).Error(err, "cannot record drift")
	}
	return updated
}

// markNoDrift records that nothing differs from what was applied; note
// says what drift ignores by itself (see scaledNote).
func markNoDrift(gs *v1alpha1.GitSync, note string) {
	msg := withNote("No drift", note)
	setCondition(gs, v1alpha1.DriftedCondition, metav1.ConditionFalse, v1alpha1.ReasonNoDrift, msg)
	if gs.Status.Drift != nil {
		gs.Status.Drift.Count = 0
	}
}

func driftedObjects(report *drift.Report, now metav1.Time) []v1alpha1.DriftedObject {
	var out []v1alpha1.DriftedObject
	for _, o := range report.Drifted {
		if len(out) == v1alpha1.MaxDriftedObjects {
			break
		}
		detected := now
		if !o.DetectedAt.IsZero() {
			detected = metav1.NewTime(o.DetectedAt.Truncate(time.Second))
		}
		out = append(out, v1alpha1.DriftedObject{
			APIVersion: o.APIVersion, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name,
			Paths: o.Paths, Managers: o.Managers, Deleted: o.Deleted, DetectedTime: detected,
		})
	}
	return out
}

// driftMessage says what drifted, object by object (first few), paths and
// managers only: values never appear, so Secret data cannot leak.
func driftMessage(report *drift.Report) string {
	var parts []string
	for i, o := range report.Drifted {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", report.Count-3))
			break
		}
		id := o.Kind + "/" + o.Name
		if o.Namespace != "" {
			id = o.Kind + "/" + o.Namespace + "/" + o.Name
		}
		switch {
		case o.Deleted:
			parts = append(parts, id+" deleted")
		case len(o.Managers) > 0:
			parts = append(parts, fmt.Sprintf("%s %s changed by %s", id, strings.Join(o.Paths, ","), strings.Join(o.Managers, ",")))
		default:
			parts = append(parts, fmt.Sprintf("%s %s changed", id, strings.Join(o.Paths, ",")))
		}
	}
	return fmt.Sprintf("%d object(s) differ from Git: %s", report.Count, strings.Join(parts, "; "))
}

// sameDrift reports whether the status already shows these objects as
// drifted with the same paths, so that a repeated check adds no event:
// still drifted, or drifted and corrected (the same change made again
// and corrected again tells nothing new).
func sameDrift(st *v1alpha1.DriftStatus, objects []v1alpha1.DriftedObject) bool {
	if st == nil || len(st.Objects) != len(objects) {
		return false
	}
	sig := func(o v1alpha1.DriftedObject) string {
		p := append([]string(nil), o.Paths...)
		sort.Strings(p)
		return fmt.Sprintf("%s/%s/%s/%s/%v", o.Kind, o.Namespace, o.Name, strings.Join(p, ","), o.Deleted)
	}
	for i := range objects {
		if sig(st.Objects[i]) != sig(objects[i]) {
			return false
		}
	}
	return true
}
