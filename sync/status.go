package sync

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

// statusWriter writes GitSync status with an optimistic lock, so that a
// decision taken on the status is taken on the newest one.
type statusWriter struct {
	client client.Client
	// reader reads from the API server when the cache lags.
	reader   client.Reader
	reporter Reporter
}

// patch reads the GitSync, lets mutate change its status and sends the
// difference as a merge patch guarded by the resourceVersion it read; when
// mutate changed nothing, nothing is sent. See update.
func (w *statusWriter) patch(ctx context.Context, key types.NamespacedName, mutate func(*v1alpha1.GitSync)) (*v1alpha1.GitSync, error) {
	return w.update(ctx, key, func(gs *v1alpha1.GitSync) bool {
		before := gs.Status.DeepCopy()
		mutate(gs)
		return !equality.Semantic.DeepEqual(before, &gs.Status)
	})
}

// update reads the GitSync, lets mutate change its status and, when mutate
// returns true, sends the difference as a merge patch guarded by the
// resourceVersion it read (also when the status did not change: the write
// then only proves that mutate decided on the newest status). The first
// read is from the cache; when the cache lags behind a write (a conflict),
// the GitSync is read again from the API server and mutate runs on that,
// so mutate always decides on the newest status. It returns the GitSync as
// written (as read when nothing was written); a GitSync that is gone is
// not an error (nil, nil).
func (w *statusWriter) update(ctx context.Context, key types.NamespacedName, mutate func(*v1alpha1.GitSync) bool) (*v1alpha1.GitSync, error) {
	var reader client.Reader = w.client
	for attempt := 0; ; attempt++ {
		gs := &v1alpha1.GitSync{}
		if err := reader.Get(ctx, key, gs); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			return nil, fmt.Errorf("GitSync %s: read for status: %w", key, err)
		}
		orig := gs.DeepCopy()
		if !mutate(gs) {
			return gs, nil
		}
		data, err := statusPatch(orig, gs)
		if err != nil {
			return nil, fmt.Errorf("GitSync %s: write status: %w", key, err)
		}
		err = w.client.Status().Patch(ctx, gs, client.RawPatch(types.MergePatchType, data))
		switch {
		case apierrors.IsConflict(err) && w.reader != nil && attempt < 4:
			reader = w.reader
			continue
		case apierrors.IsNotFound(err):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("GitSync %s: write status: %w", key, err)
		}
		observeStatus(gs)
		if w.reporter != nil {
			w.reporter.Report(gs.DeepCopy())
		}
		return gs, nil
	}
}

// fresh returns gs when the cache it was read from is current, else the
// GitSync as the API server has it now (nil when it is gone). One
// metadata-only read from the API server tells; without a reader gs is
// taken as current.
func (w *statusWriter) fresh(ctx context.Context, gs *v1alpha1.GitSync) (*v1alpha1.GitSync, error) {
	if w.reader == nil {
		return gs, nil
	}
	key := client.ObjectKeyFromObject(gs)
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("GitSync"))
	if err := w.reader.Get(ctx, key, m); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("GitSync %s: read: %w", key, err)
	}
	if m.ResourceVersion == gs.ResourceVersion {
		return gs, nil
	}
	live := &v1alpha1.GitSync{}
	if err := w.reader.Get(ctx, key, live); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("GitSync %s: read: %w", key, err)
	}
	return live, nil
}

func setCondition(gs *v1alpha1.GitSync, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&gs.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gs.Generation,
	})
}

// markProgressing records that a sync of rev has started. A retry of a
// failed sync keeps Ready=False (with its reason) while it runs, so that the
// status doesn't flap between Unknown and False on every retry.
func markProgressing(gs *v1alpha1.GitSync, rev, why string) {
	msg := fmt.Sprintf("Syncing %s (%s)", rev, why)
	setCondition(gs, v1alpha1.ReconcilingCondition, metav1.ConditionTrue, v1alpha1.ReasonProgressing, msg)
	if why != whyRetry {
		setCondition(gs, v1alpha1.ReadyCondition, metav1.ConditionUnknown, v1alpha1.ReasonProgressing, msg)
		meta.RemoveStatusCondition(&gs.Status.Conditions, v1alpha1.StalledCondition)
	}
	gs.Status.LastAttemptedRevision = rev
}

// markFailed records a failed sync. A user error (one a retry will not fix)
// also sets Stalled.
func markFailed(gs *v1alpha1.GitSync, reason string, err error, userError bool) {
	msg := err.Error()
	setCondition(gs, v1alpha1.ReadyCondition, metav1.ConditionFalse, reason, msg)
	meta.RemoveStatusCondition(&gs.Status.Conditions, v1alpha1.ReconcilingCondition)
	if userError {
		setCondition(gs, v1alpha1.StalledCondition, metav1.ConditionTrue, reason, msg)
	} else {
		meta.RemoveStatusCondition(&gs.Status.Conditions, v1alpha1.StalledCondition)
	}
	gs.Status.ObservedGeneration = gs.Generation
}

// markSucceeded records that rev is applied.
func markSucceeded(gs *v1alpha1.GitSync, rev, msg string) {
	setCondition(gs, v1alpha1.ReadyCondition, metav1.ConditionTrue, v1alpha1.ReasonSucceeded, msg)
	meta.RemoveStatusCondition(&gs.Status.Conditions, v1alpha1.ReconcilingCondition)
	meta.RemoveStatusCondition(&gs.Status.Conditions, v1alpha1.StalledCondition)
	gs.Status.LastAppliedRevision = rev
	gs.Status.LastAttemptedRevision = rev
	gs.Status.ObservedGeneration = gs.Generation
}
