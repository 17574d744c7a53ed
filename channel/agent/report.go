package agent

import (
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/channelpb"
)

// Phases a report carries, as the hub's badges show them (the protocol
// defines them).
const (
	PhaseSynced      = channelpb.PhaseSynced
	PhaseProgressing = channelpb.PhaseProgressing
	PhaseFailed      = channelpb.PhaseFailed
	PhaseDrifted     = channelpb.PhaseDrifted
	PhaseSuspended   = channelpb.PhaseSuspended
	PhaseUnknown     = channelpb.PhaseUnknown
)

// Report hands over the GitSync as it now is. It converts it at once (the
// caller may change gs afterwards) and keeps only the newest report per
// GitSync until the hub acknowledges it. It never blocks.
func (c *Client) Report(gs *v1alpha1.GitSync) {
	if gs == nil || gs.Name == "" {
		return
	}
	c.sources.remember(gs.Spec.Source.URL)
	r := toReport(gs)
	if w := c.warnings.Load(); w != nil {
		r.WarningEvents = (*w).Count(gs.Namespace, gs.Name)
	}
	c.buf.put(r)
}

// Forget says the GitSync is gone from the cluster; the hub gets a report
// with deleted set. It never blocks.
func (c *Client) Forget(namespace, name string) {
	if name == "" {
		return
	}
	c.buf.put(&channelpb.SyncReport{
		Namespace: namespace,
		Name:      name,
		Phase:     PhaseUnknown,
		Deleted:   true,
	})
}

// toReport converts a GitSync into a report without a state_version. What
// it returns carries no credentials (a token in the source URL or in a
// condition message stays in the cluster) and fits the protocol's limits.
func toReport(gs *v1alpha1.GitSync) *channelpb.SyncReport {
	st := gs.Status
	r := &channelpb.SyncReport{
		Namespace:         gs.Namespace,
		Name:              gs.Name,
		SourceUrl:         gs.Spec.Source.URL,
		Ref:               refString(gs.Spec.Source.Ref),
		Path:              gs.Spec.Path,
		Revision:          st.LastAppliedRevision,
		AttemptedRevision: st.LastAttemptedRevision,
	}
	r.Phase, r.Message = phase(gs)
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
			group, _, _ := strings.Cut(o.APIVersion, "/")
			if !strings.Contains(o.APIVersion, "/") {
				group = ""
			}
			r.Drift.Objects = append(r.Drift.Objects, &channelpb.DriftedObject{
				Group: group, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name,
				Paths:    slices.Clone(capped(o.Paths, channelpb.MaxPaths)),
				Managers: slices.Clone(capped(o.Managers, channelpb.MaxPaths)), Deleted: o.Deleted,
				DetectedUnixMs: o.DetectedTime.UnixMilli(),
			})
		}
	}
	channelpb.RedactReport(r)
	return r
}

// capped is the first n of s: a report lists at most what the protocol
// allows, the counts say how many there were.
func capped[T any](s []T, n int) []T {
	return s[:min(len(s), n)]
}

// phase reads the badge's phase and message from the conditions, kstatus
// style: suspended wins, then Stalled, then Ready.
func phase(gs *v1alpha1.GitSync) (string, string) {
	conds := gs.Status.Conditions
	ready := meta.FindStatusCondition(conds, v1alpha1.ReadyCondition)
	msg := ""
	if ready != nil {
		msg = ready.Message
	}
	if gs.Spec.Suspend {
		return PhaseSuspended, msg
	}
	if stalled := meta.FindStatusCondition(conds, v1alpha1.StalledCondition); stalled != nil && stalled.Status == metav1.ConditionTrue {
		return PhaseFailed, stalled.Message
	}
	switch {
	case ready == nil:
		if meta.IsStatusConditionTrue(conds, v1alpha1.ReconcilingCondition) {
			return PhaseProgressing, msg
		}
		return PhaseUnknown, msg
	case ready.Status == metav1.ConditionTrue:
		if d := meta.FindStatusCondition(conds, v1alpha1.DriftedCondition); d != nil && d.Status == metav1.ConditionTrue {
			return PhaseDrifted, d.Message
		}
		return PhaseSynced, msg
	case ready.Status == metav1.ConditionFalse:
		return PhaseFailed, msg
	default:
		return PhaseProgressing, msg
	}
}

// refString spells the ref as the protocol does: "branch:main",
// "tag:v1", "semver:>=1.0" or "commit:<sha>". No ref means branch main.
func refString(r v1alpha1.GitRef) string {
	switch {
	case r.Commit != "":
		return "commit:" + r.Commit
	case r.Semver != "":
		return "semver:" + r.Semver
	case r.Tag != "":
		return "tag:" + r.Tag
	case r.Branch != "":
		return "branch:" + r.Branch
	}
	return "branch:main"
}
