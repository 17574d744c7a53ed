package drift

import "testing"

func TestOwnerOf(t *testing.T) {
	h, owner := setup(t)
	other := Owner{Name: "other", Namespace: newNamespace(t)}
	h.applyAndRecord(t, other, readObjects(t, "app.yaml", map[string]string{"PASSWORD": password}))
	for _, tc := range []struct {
		kind, namespace, name string
		want                  Owner
		ok                    bool
	}{
		{"Deployment", owner.Namespace, "web", owner, true},
		{"Deployment", other.Namespace, "web", other, true},
		{"ConfigMap", owner.Namespace, "web", Owner{}, false}, // no ConfigMap of that name
		{"Deployment", owner.Namespace, "nope", Owner{}, false},
		{"Pod", owner.Namespace, "web", Owner{}, false}, // a kind nobody applied
	} {
		got, ok := h.tracker.OwnerOf(tc.kind, tc.namespace, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("OwnerOf(%s, %s, %s) = %v, %v; want %v, %v", tc.kind, tc.namespace, tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
