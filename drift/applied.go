package drift

import (
	"encoding/json"
	"fmt"
	"sort"

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
