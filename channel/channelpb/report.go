package channelpb

import "strings"

// Phases a SyncReport carries in its deprecated string field phase (9), as
// the hub's badges show them. An empty phase reads as PhaseUnknown. New
// code sets sync_phase (17) and lets Normalize spell it.
const (
	PhaseSynced      = "synced"
	PhaseProgressing = "progressing"
	PhaseFailed      = "failed"
	PhaseDrifted     = "drifted"
	PhaseSuspended   = "suspended"
	PhaseUnknown     = "unknown"
)

var phaseLabels = map[Phase]string{
	Phase_PHASE_SYNCED:      PhaseSynced,
	Phase_PHASE_PROGRESSING: PhaseProgressing,
	Phase_PHASE_FAILED:      PhaseFailed,
	Phase_PHASE_DRIFTED:     PhaseDrifted,
	Phase_PHASE_SUSPENDED:   PhaseSuspended,
	Phase_PHASE_UNKNOWN:     PhaseUnknown,
}

// Label is p spelled as the string field phase (9) and the hub's badges
// spell it ("synced", ...); "" for PHASE_UNSPECIFIED and for a number this
// version does not know (a newer agent's).
func (p Phase) Label() string { return phaseLabels[p] }

// ParsePhase reads the string spelling of a phase: PHASE_UNSPECIFIED for
// "" and for a spelling that is not one of the Phase constants.
func ParsePhase(s string) Phase {
	for p, label := range phaseLabels {
		if label == s {
			return p
		}
	}
	return Phase_PHASE_UNSPECIFIED
}

var refPrefixes = map[RefKind]string{
	RefKind_REF_KIND_BRANCH: "branch",
	RefKind_REF_KIND_TAG:    "tag",
	RefKind_REF_KIND_SEMVER: "semver",
	RefKind_REF_KIND_COMMIT: "commit",
}

// Text is r spelled as the string field ref (5) spells it: "branch:main",
// "tag:v1", "semver:>=1.0" or "commit:<sha>". It is "" when r is nil, its
// kind is unset or unknown to this version, or its name is empty.
func (r *Ref) Text() string {
	prefix := refPrefixes[r.GetKind()]
	if prefix == "" || r.GetName() == "" {
		return ""
	}
	return prefix + ":" + r.GetName()
}

// ParseRef reads the string spelling of a ref ("branch:main"); nil when s
// is not in that spelling. The commit stays empty: the string never
// carried it.
func ParseRef(s string) *Ref {
	prefix, name, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return nil
	}
	for kind, p := range refPrefixes {
		if p == prefix {
			return &Ref{Kind: kind, Name: name}
		}
	}
	return nil
}

// Normalize makes r state its phase and its ref both ways, typed
// (sync_phase, source_ref) and as the deprecated strings (phase, ref),
// from whichever the agent sent: an agent from before the typed fields
// sends only the strings, a newer one may one day send only the typed
// fields. The typed field wins when both are set (Validate refuses a
// report where they disagree). A typed value this version does not know
// (a newer agent's) is kept as it is, and its string read instead.
//
// The agent calls it on the report it builds, so that a hub of any
// version understands it; the hub calls it on every report it receives,
// so that what it stores and shows reads the same whatever the agent's
// version.
func (r *SyncReport) Normalize() {
	if r == nil {
		return
	}
	if label := r.GetSyncPhase().Label(); label != "" {
		r.Phase = label
	} else if r.GetSyncPhase() == Phase_PHASE_UNSPECIFIED {
		r.SyncPhase = ParsePhase(r.GetPhase())
	}
	if text := r.GetSourceRef().Text(); text != "" {
		r.Ref = text
	} else if r.GetSourceRef() == nil {
		r.SourceRef = ParseRef(r.GetRef())
	}
}
