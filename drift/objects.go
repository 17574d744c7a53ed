package drift

import (
	"sort"
	"time"
)

// State is what the watch cache says of one tracked object.
type State string

// States of a tracked object, from the watch cache and the last Check.
const (
	// StateInSync: the cache shows the version applied (or one that differs
	// in status only, or one a Check accepted).
	StateInSync State = "InSync"
	// StateChanged: the cache shows a later version that no Check has judged
	// yet; it may or may not be drift.
	StateChanged State = "Changed"
	// StateDrifted: a Check found drift at the version the cache shows.
	StateDrifted State = "Drifted"
	// StateMissing: the object is gone from the cache (deleted, or its owner
	// labels were removed).
	StateMissing State = "Missing"
)

// Tracked is one object of an owner as the watch cache has it. It
// carries no field values.
type Tracked struct {
	// ID is the inventory ID, <namespace>_<name>_<group>_<kind>.
	ID        string
	Group     string
	Version   string
	Kind      string
	Resource  string // plural resource name, e.g. deployments
	Namespace string
	Name      string
	State     State
	// Paths are the drifted fields' JSON pointers when State is StateDrifted.
	Paths []string
	// Since is when a watch event first showed the change; zero StateInSync.
	Since time.Time
}

// Objects returns owner's recorded objects, sorted by ID, with their state
// in the watch cache; false when nothing is recorded for owner. It reads
// memory only: no API request, and it changes nothing.
func (t *Tracker) Objects(owner Owner) ([]Tracked, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.owners[owner]
	if !ok || !st.recorded {
		return nil, false
	}
	now := time.Now()
	out := make([]Tracked, 0, len(st.entries))
	for _, e := range st.entries {
		o := Tracked{
			ID: e.id, Group: e.gvk.Group, Version: e.gvk.Version, Kind: e.gvk.Kind,
			Resource: e.key.gvr.Resource, Namespace: e.key.namespace, Name: e.key.name, State: StateInSync,
		}
		if w, ok := t.watches[e.key.gvr]; ok {
			if s, suspect := e.suspect(w, now); suspect {
				o.Since = e.changedAt
				switch {
				case s.Deleted:
					o.State = StateMissing
				case e.checked != nil && (e.checkedRV == s.ResourceVersion || (e.checkedSig != "" && e.checkedSig == s.sig)):
					o.State, o.Paths = StateDrifted, append([]string(nil), e.checked.Paths...)
				default:
					o.State = StateChanged
				}
			}
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, true
}
