package drift

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/fluxcd/cli-utils/pkg/object"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Tracking reports whether Record was called for owner since the tracker
// started or since Forget. Until then the tracker cannot see drift for it:
// an agent that just started must apply once to know what was applied.
func (t *Tracker) Tracking(owner Owner) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.owners[owner]
	return ok && st.recorded
}

// Applied returns owner's recorded objects exactly as they were applied:
// those with the given inventory IDs, or all of them when ids is nil,
// sorted by ID. Correcting drift re-applies these; it needs no render.
func (t *Tracker) Applied(owner Owner, ids []string) ([]*unstructured.Unstructured, error) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	t.mu.Lock()
	var raw []*entry
	if st, ok := t.owners[owner]; ok {
		for _, e := range st.entries {
			if ids == nil || want[e.id] {
				raw = append(raw, e)
			}
		}
	}
	t.mu.Unlock()
	sort.Slice(raw, func(i, j int) bool { return raw[i].id < raw[j].id })
	out := make([]*unstructured.Unstructured, 0, len(raw))
	for _, e := range raw {
		u := &unstructured.Unstructured{}
		if err := json.Unmarshal(e.applied, &u.Object); err != nil {
			return nil, fmt.Errorf("recorded %s: %w", e.id, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// Unchanged returns the function apply.Options.Skip takes, for owner's
// next apply: true for a planned object (after apply.Plan's normalisation)
// whose fingerprint equals the one recorded at the last apply and whose
// resourceVersion in the watch cache is still the one recorded after that
// apply (or a later one Check or a status-only write accepted). Such an
// object is exactly as Tether left it, so applying it again would change
// nothing: a forced resync with nothing changed costs no request. Any
// doubt answers false, and the object is applied: a changed render, an
// out-of-band edit, a deletion, a version the watch has not caught up
// with, an object never recorded. The function makes no API request and
// is safe for concurrent use.
func (t *Tracker) Unchanged(owner Owner) func(obj *unstructured.Unstructured) bool {
	t.mu.Lock()
	byID := map[string]*entry{}
	if st, ok := t.owners[owner]; ok {
		for _, e := range st.entries {
			byID[e.id] = e
		}
	}
	t.mu.Unlock()
	return func(obj *unstructured.Unstructured) bool {
		if obj == nil {
			return false
		}
		e := byID[object.UnstructuredToObjMetadata(obj).String()]
		if e == nil {
			return false
		}
		if _, sum, err := fingerprint(obj); err != nil || sum != e.sum {
			return false
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		st, ok := t.owners[owner]
		if !ok || st.entries[e.key] != e || e.rv == "" {
			return false // recorded again, or forgotten, since
		}
		w, ok := t.watches[e.key.gvr]
		if !ok {
			return false
		}
		cached, exists, err := w.informer.GetStore().GetByKey(e.key.storeKey())
		m, _ := cached.(*metav1.PartialObjectMetadata)
		return err == nil && exists && m != nil && m.ResourceVersion == e.rv
	}
}
