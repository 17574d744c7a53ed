package channelpb

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// Limits of one message. The agent trims its reports to them and the hub
// refuses a message beyond them: they are far above what a real GitSync
// produces, and they keep one report's cost to the hub bounded.
const (
	// MaxMessageBytes caps one encoded message on the wire (gRPC's
	// MaxRecvMsgSize on the hub).
	MaxMessageBytes = 4 << 20
	// MaxNameLength caps names: Kubernetes names, agent names, kinds.
	MaxNameLength = 253
	// MaxTextLength caps free text (a message, as metav1.Condition does)
	// and URLs, refs, paths and revisions.
	MaxTextLength = 32 << 10
	// MaxConditions caps a report's conditions.
	MaxConditions = 32
	// MaxNamespaces caps a report's per-namespace counts.
	MaxNamespaces = 4096
	// MaxDriftedObjects caps the drifted objects a report lists (the
	// GitSync status lists 10).
	MaxDriftedObjects = 100
	// MaxPaths caps the paths, and the managers, of one drifted object.
	MaxPaths = 1000
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid message")

// Validate checks a Hello: a usable agent name, and bounded version and
// cluster UID.
func (h *Hello) Validate() error {
	switch {
	case h == nil:
		return fmt.Errorf("hello: empty: %w", ErrInvalid)
	case h.GetAgentName() == "":
		return fmt.Errorf("hello: agent_name is empty: %w", ErrInvalid)
	}
	if err := checkName("hello: agent_name", h.GetAgentName()); err != nil {
		return err
	}
	return checkTexts("hello", map[string]string{"version": h.GetVersion(), "cluster_uid": h.GetClusterUid()}, MaxNameLength)
}

// Validate checks what the hub relies on in a report: the GitSync's
// namespace and name, a state_version, a known phase and condition
// statuses, a ref in the protocol's spelling, typed phase and ref that
// agree with their string spellings, and every limit above.
// Errors lead with namespace/name when those are usable.
func (r *SyncReport) Validate() error {
	if r == nil {
		return fmt.Errorf("report: empty: %w", ErrInvalid)
	}
	if err := errors.Join(checkName("report: namespace", r.GetNamespace()), checkName("report: name", r.GetName())); err != nil {
		return err
	}
	id := "report " + r.GetNamespace() + "/" + r.GetName()
	if r.GetStateVersion() == 0 {
		return fmt.Errorf("%s: state_version is 0: %w", id, ErrInvalid)
	}
	switch r.GetPhase() {
	case "", PhaseSynced, PhaseProgressing, PhaseFailed, PhaseDrifted, PhaseSuspended, PhaseUnknown:
	default:
		return fmt.Errorf("%s: unknown phase %.40q: %w", id, r.GetPhase(), ErrInvalid)
	}
	if ref := r.GetRef(); ref != "" && ParseRef(ref) == nil {
		return fmt.Errorf("%s: ref %.40q is not branch:, tag:, semver: or commit:: %w", id, ref, ErrInvalid)
	}
	if err := checkTyped(id, r); err != nil {
		return err
	}
	if err := checkTexts(id, map[string]string{
		"source_url": r.GetSourceUrl(), "ref": r.GetRef(), "path": r.GetPath(), "revision": r.GetRevision(),
		"attempted_revision": r.GetAttemptedRevision(), "message": r.GetMessage(),
	}, MaxTextLength); err != nil {
		return err
	}
	if err := checkCount(id, "conditions", len(r.GetConditions()), MaxConditions); err != nil {
		return err
	}
	for i, c := range r.GetConditions() {
		switch c.GetStatus() {
		case "True", "False", "Unknown":
		default:
			return fmt.Errorf("%s: condition %d: status %.40q is not True, False or Unknown: %w", id, i, c.GetStatus(), ErrInvalid)
		}
		if err := checkTexts(fmt.Sprintf("%s: condition %d", id, i), map[string]string{
			"type": c.GetType(), "reason": c.GetReason(), "message": c.GetMessage(),
		}, MaxTextLength); err != nil {
			return err
		}
	}
	if err := checkCount(id, "namespaces", len(r.GetNamespaces()), MaxNamespaces); err != nil {
		return err
	}
	for i, n := range r.GetNamespaces() {
		if len(n.GetNamespace()) > MaxNameLength || n.GetObjects() < 0 {
			return fmt.Errorf("%s: namespace count %d is malformed: %w", id, i, ErrInvalid)
		}
	}
	if d := r.GetDrift(); d != nil {
		if d.GetCount() < 0 {
			return fmt.Errorf("%s: drift count %d: %w", id, d.GetCount(), ErrInvalid)
		}
		if err := checkCount(id, "drifted objects", len(d.GetObjects()), MaxDriftedObjects); err != nil {
			return err
		}
		for i, o := range d.GetObjects() {
			if err := checkDrifted(fmt.Sprintf("%s: drifted object %d", id, i), o); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkTyped checks sync_phase and source_ref against the deprecated
// strings: an old hub reads only the strings and a new one the typed
// fields, so a report where they disagree would show two states. A typed
// value this version does not know (a newer agent's) is left to the
// strings.
func checkTyped(id string, r *SyncReport) error {
	if label := r.GetSyncPhase().Label(); label != "" && r.GetPhase() != "" && r.GetPhase() != label {
		return fmt.Errorf("%s: sync_phase %s disagrees with phase %.40q: %w", id, r.GetSyncPhase(), r.GetPhase(), ErrInvalid)
	}
	ref := r.GetSourceRef()
	if ref == nil {
		return nil
	}
	if _, known := refPrefixes[ref.GetKind()]; known && ref.GetName() == "" {
		return fmt.Errorf("%s: source_ref of kind %s has no name: %w", id, ref.GetKind(), ErrInvalid)
	}
	if text := ref.Text(); text != "" && r.GetRef() != "" && r.GetRef() != text {
		return fmt.Errorf("%s: source_ref %.40q disagrees with ref %.40q: %w", id, text, r.GetRef(), ErrInvalid)
	}
	if err := checkTexts(id, map[string]string{"source_ref name": ref.GetName()}, MaxTextLength); err != nil {
		return err
	}
	if c := ref.GetCommit(); c != "" && !isCommit(c) {
		return fmt.Errorf("%s: source_ref commit %.70q is not 40 or 64 lower-case hex digits: %w", id, c, ErrInvalid)
	}
	return nil
}

// isCommit accepts a full SHA-1 or SHA-256 commit name.
func isCommit(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	return strings.IndexFunc(s, func(c rune) bool { return (c < '0' || c > '9') && (c < 'a' || c > 'f') }) < 0
}

func checkDrifted(id string, o *DriftedObject) error {
	if err := checkTexts(id, map[string]string{
		"group": o.GetGroup(), "kind": o.GetKind(), "namespace": o.GetNamespace(), "name": o.GetName(),
	}, MaxNameLength); err != nil {
		return err
	}
	if err := errors.Join(checkCount(id, "paths", len(o.GetPaths()), MaxPaths),
		checkCount(id, "managers", len(o.GetManagers()), MaxPaths)); err != nil {
		return err
	}
	for _, p := range append(o.GetPaths(), o.GetManagers()...) {
		if len(p) > MaxTextLength {
			return fmt.Errorf("%s: a path or manager longer than %d: %w", id, MaxTextLength, ErrInvalid)
		}
	}
	return nil
}

// checkName accepts a name the hub can put into an ID ("agent/ns/name")
// and a URL path: non-empty, bounded, no "/" and no control characters.
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty: %w", what, ErrInvalid)
	case len(s) > MaxNameLength:
		return fmt.Errorf("%s is longer than %d: %w", what, MaxNameLength, ErrInvalid)
	case strings.Contains(s, "/") || strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Errorf("%s %.40q contains '/' or a control character: %w", what, s, ErrInvalid)
	}
	return nil
}

func checkTexts(id string, fields map[string]string, limit int) error {
	for name, v := range fields {
		if len(v) > limit {
			return fmt.Errorf("%s: %s longer than %d: %w", id, name, limit, ErrInvalid)
		}
	}
	return nil
}

func checkCount(id, what string, n, limit int) error {
	if n > limit {
		return fmt.Errorf("%s: %d %s, at most %d: %w", id, n, what, limit, ErrInvalid)
	}
	return nil
}
