package sync

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/api/v1alpha1"
)

// Why a sync runs; the strings end up in logs and in the Reconciling message.
const (
	whyNone       = ""
	whyNew        = "first sync"
	whyRevision   = "new revision"
	whySpec       = "spec changed"
	whyResync     = "resync requested"
	whyRetry      = "retrying failed sync"
	whyIncomplete = "last sync did not finish"
	whyUntracked  = "agent started: re-apply to watch for drift"
)

// decide says whether a GitSync needs a full sync at revision rev, and why.
// It is pure: everything it needs is in the object and the revision.
func decide(gs *v1alpha1.GitSync, rev string) string {
	st := &gs.Status
	ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ReadyCondition)
	switch {
	case st.LastAppliedRevision == "" && ready == nil:
		return whyNew
	case resyncValue(gs) != st.LastHandledResyncAt:
		return whyResync
	case gs.Generation != st.ObservedGeneration:
		return whySpec
	case rev != st.LastAppliedRevision && (rev != st.LastAttemptedRevision || ready == nil || ready.Status != metav1.ConditionFalse):
		return whyRevision
	case ready == nil || ready.Status == metav1.ConditionUnknown:
		return whyIncomplete
	case ready.Status == metav1.ConditionFalse:
		return whyRetry
	}
	return whyNone
}

// resyncValue is the GitSync's resync annotation, or "".
func resyncValue(gs *v1alpha1.GitSync) string {
	return gs.Annotations[v1alpha1.ResyncAnnotation]
}

// resyncPending reports whether gs asks for a resync its status has not
// echoed yet.
func resyncPending(gs *v1alpha1.GitSync) bool {
	return resyncValue(gs) != gs.Status.LastHandledResyncAt
}
