package drift

import (
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"
)

// Suspect is a recorded object the watch cache shows changed or gone.
type Suspect struct {
	// ID is the inventory ID, <namespace>_<name>_<group>_<kind>.
	ID        string
	Kind      string
	Namespace string
	Name      string
	// Deleted says the object is gone from the watch cache: deleted, or
	// its owner labels were removed. Check tells the two apart.
	Deleted bool
	// Since is when a watch event first showed the change.
	Since time.Time
	// ResourceVersion is the version in the watch cache; "" when deleted.
	ResourceVersion string

	key objKey
	sig string // signature in the watch cache; "" when deleted
}

// Suspects returns owner's objects whose watched resourceVersion moved
// past the recorded one, other than by status writes alone (see
// signature), or that are gone, sorted by ID. It reads only the
// watch cache: no API request. An object the cache has not caught up with
// yet (an older version, or not seen since the apply created it) is not a
// suspect; the event that catches it up calls OnChange if it differs.
func (t *Tracker) Suspects(owner Owner) []Suspect {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.owners[owner]
	if !ok {
		return nil
	}
	return t.suspectsLocked(st, time.Now())
}

func (t *Tracker) suspectsLocked(st *ownerState, now time.Time) []Suspect {
	var out []Suspect
	for _, e := range st.entries {
		w, ok := t.watches[e.key.gvr]
		if !ok {
			continue
		}
		s, ok := e.suspect(w, now)
		if ok {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// suspect compares e with the watch cache of its resource.
func (e *entry) suspect(w *watch, now time.Time) (Suspect, bool) {
	s := Suspect{ID: e.id, Kind: e.gvk.Kind, Namespace: e.key.namespace, Name: e.key.name, Since: e.changedAt, key: e.key}
	if s.Since.IsZero() {
		s.Since = now
	}
	obj, exists, err := w.informer.GetStore().GetByKey(e.key.storeKey())
	if err != nil {
		return s, false
	}
	if !exists {
		// Gone, unless the watch has not yet delivered the apply that
		// created it: the watch's own version tells.
		if e.rv != "" && !atLeast(w.informer.LastSyncResourceVersion(), e.rv) {
			return s, false
		}
		s.Deleted = true
		return s, true
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok || !newer(m.ResourceVersion, e.rv) || e.harmless(m) {
		return s, false
	}
	s.ResourceVersion, s.sig = m.ResourceVersion, cachedSignature(m)
	return s, true
}

// harmless reports whether m, a later version of e's object in the watch
// cache, differs from the recorded version in status only: its signature
// equals the recorded one. Without a recorded signature nothing is
// harmless, and Check decides.
func (e *entry) harmless(m *metav1.PartialObjectMetadata) bool {
	return e.sig != "" && cachedSignature(m) == e.sig
}

// newer reports whether live is past recorded. Resource versions compare
// as integers when both are well formed (what an etcd-backed API server
// writes; see k8s.io/apimachinery/pkg/util/resourceversion); otherwise any
// difference counts, which may cost a Check of a lagging cache entry but
// never misses a change.
func newer(live, recorded string) bool {
	if recorded == "" {
		return live != ""
	}
	c, err := resourceversion.CompareResourceVersion(live, recorded)
	if err != nil {
		return live != recorded
	}
	return c > 0
}

// atLeast reports whether the watch has reached version rv.
func atLeast(watched, rv string) bool {
	c, err := resourceversion.CompareResourceVersion(watched, rv)
	if err != nil {
		return watched != ""
	}
	return c >= 0
}
