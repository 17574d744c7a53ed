package sync

import (
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/source"
)

// Reporter receives the state of each GitSync after every status change,
// for the hub. ReportTo makes one that builds the channel's reports; calls
// must not block (the implementation buffers and sends when it can).
type Reporter interface {
	// Report hands over the GitSync as it now is.
	Report(gs *v1alpha1.GitSync)
	// Forget says the GitSync is gone from the cluster.
	Forget(namespace, name string)
}

// ReportSink takes the reports sync builds, for the hub: the channel's
// agent half implements it, without reading the CRD. Send must not block,
// and takes r over.
type ReportSink interface {
	// Send hands over the newest report of one GitSync. sourceURL is the
	// GitSync's source URL as the cluster spells it, credentials and all
	// ("" for a deleted GitSync): the report carries it redacted, and the
	// sink may keep the original in memory to route a hub's "sync now" for
	// the redacted URL back to it. It never leaves the cluster.
	Send(r *channelpb.SyncReport, sourceURL string)
}

// ReportTo returns the Reporter that turns every GitSync it is handed into
// its report (BuildReport), and a GitSync gone from the cluster into a
// deleted one, for sink.
func ReportTo(sink ReportSink) Reporter { return reportTo{sink} }

type reportTo struct{ sink ReportSink }

func (t reportTo) Report(gs *v1alpha1.GitSync) {
	if gs == nil || gs.Name == "" {
		return
	}
	t.sink.Send(BuildReport(gs), gs.Spec.Source.URL)
}

func (t reportTo) Forget(namespace, name string) {
	if name == "" {
		return
	}
	t.sink.Send(DeletedReport(namespace, name), "")
}

// DeletedReport is the report of a GitSync gone from the cluster.
func DeletedReport(namespace, name string) *channelpb.SyncReport {
	r := &channelpb.SyncReport{Namespace: namespace, Name: name, SyncPhase: channelpb.Phase_PHASE_UNKNOWN, Deleted: true}
	r.Normalize()
	return r
}

// BuildReport turns a GitSync into the report the hub gets, without a
// state_version (the channel stamps it when it queues the report) and
// without the warning count (the channel's event collector knows it). The
// phase and the ref are set typed and, for hubs from before those fields,
// as the deprecated strings. What it returns carries no credentials (a
// token in the source URL or in a condition message stays in the cluster),
// fits the protocol's limits, and shares no memory with gs.
func BuildReport(gs *v1alpha1.GitSync) *channelpb.SyncReport {
	st := gs.Status
	r := &channelpb.SyncReport{
		Namespace:         gs.Namespace,
		Name:              gs.Name,
		SourceUrl:         gs.Spec.Source.URL,
		SourceRef:         reportRef(gs),
		Path:              gs.Spec.Path,
		Revision:          st.LastAppliedRevision,
		AttemptedRevision: st.LastAttemptedRevision,
	}
	r.SyncPhase, r.Message = reportPhase(gs)
	if st.LastSyncTime != nil {
		r.LastSyncUnixMs = st.LastSyncTime.UnixMilli()
	}
	for _, c := range capped(st.Conditions, channelpb.MaxConditions) {
		r.Conditions = append(r.Conditions, &channelpb.Condition{
			Type:                 c.Type,
			Status:               string(c.Status),
			Reason:               c.Reason,
			Message:              c.Message,
			LastTransitionUnixMs: c.LastTransitionTime.UnixMilli(),
		})
	}
	for _, n := range capped(st.Namespaces, channelpb.MaxNamespaces) {
		r.Namespaces = append(r.Namespaces, &channelpb.NamespaceCount{
			Namespace: n.Namespace,
			Objects:   int32(n.Objects),
		})
	}
	if d := st.Drift; d != nil {
		r.Drift = &channelpb.DriftSummary{Count: int32(d.Count)}
		for _, o := range capped(d.Objects, channelpb.MaxDriftedObjects) {
			group, _, ok := strings.Cut(o.APIVersion, "/")
			if !ok {
				group = "" // the core group: "v1"
			}
			r.Drift.Objects = append(r.Drift.Objects, &channelpb.DriftedObject{
				Group: group, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name,
				Paths:    slices.Clone(capped(o.Paths, channelpb.MaxPaths)),
				Managers: slices.Clone(capped(o.Managers, channelpb.MaxPaths)), Deleted: o.Deleted,
				DetectedUnixMs: o.DetectedTime.UnixMilli(),
			})
		}
	}
	r.Normalize()
	channelpb.RedactReport(r, v1alpha1.RedactURL, v1alpha1.RedactString)
	return r
}

// capped is the first n of s: a report lists at most what the protocol
// allows, the counts say how many there were.
func capped[T any](s []T, n int) []T {
	return s[:min(len(s), n)]
}

// reportPhase reads the badge's phase and message from the conditions,
// kstatus style: suspended wins, then Stalled, then Ready (and Drifted
// while Ready).
func reportPhase(gs *v1alpha1.GitSync) (channelpb.Phase, string) {
	conds := gs.Status.Conditions
	ready := meta.FindStatusCondition(conds, v1alpha1.ReadyCondition)
	msg := ""
	if ready != nil {
		msg = ready.Message
	}
	if gs.Spec.Suspend {
		return channelpb.Phase_PHASE_SUSPENDED, msg
	}
	if stalled := meta.FindStatusCondition(conds, v1alpha1.StalledCondition); stalled != nil && stalled.Status == metav1.ConditionTrue {
		return channelpb.Phase_PHASE_FAILED, stalled.Message
	}
	switch {
	case ready == nil:
		if meta.IsStatusConditionTrue(conds, v1alpha1.ReconcilingCondition) {
			return channelpb.Phase_PHASE_PROGRESSING, msg
		}
		return channelpb.Phase_PHASE_UNKNOWN, msg
	case ready.Status == metav1.ConditionTrue:
		if d := meta.FindStatusCondition(conds, v1alpha1.DriftedCondition); d != nil && d.Status == metav1.ConditionTrue {
			return channelpb.Phase_PHASE_DRIFTED, d.Message
		}
		return channelpb.Phase_PHASE_SYNCED, msg
	case ready.Status == metav1.ConditionFalse:
		return channelpb.Phase_PHASE_FAILED, msg
	default:
		return channelpb.Phase_PHASE_PROGRESSING, msg
	}
}

// reportRef is the ref the GitSync follows (the branch main when it names
// none) and the commit it last resolved to. A spec that sets more than one
// field (refused when synced) reads as its most exact: commit, semver,
// tag, branch.
func reportRef(gs *v1alpha1.GitSync) *channelpb.Ref {
	ref := &channelpb.Ref{Commit: resolvedCommit(gs.Status)}
	switch s := SourceRef(gs); {
	case s.Commit != "":
		ref.Kind, ref.Name = channelpb.RefKind_REF_KIND_COMMIT, s.Commit
	case s.Semver != "":
		ref.Kind, ref.Name = channelpb.RefKind_REF_KIND_SEMVER, s.Semver
	case s.Tag != "":
		ref.Kind, ref.Name = channelpb.RefKind_REF_KIND_TAG, s.Tag
	default:
		ref.Kind, ref.Name = channelpb.RefKind_REF_KIND_BRANCH, s.Branch
	}
	return ref
}

// resolvedCommit is the commit of the last attempted revision, else of
// the last applied one: what the ref pointed at when last fetched.
func resolvedCommit(st v1alpha1.GitSyncStatus) string {
	for _, rev := range []string{st.LastAttemptedRevision, st.LastAppliedRevision} {
		if r, err := source.ParseRevision(rev); err == nil {
			return r.SHA
		}
	}
	return ""
}
