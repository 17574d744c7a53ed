package drift

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/apply"
)

// TestDiff: before the first sync every object would be created; right
// after it nothing differs; after edits by hand the edited objects show as
// unified diffs, a Secret's values masked. Without the owner labels
// (DropLabels), as `tether diff` of a plain folder compares, nothing
// differs either.
func TestDiff(t *testing.T) {
	ctx := testContext(t)
	h := newHarness(t)
	owner := Owner{Name: "app", Namespace: newNamespace(t)}
	ns := owner.Namespace
	objs := readObjects(t, "app.yaml", map[string]string{"PASSWORD": password})
	plan, err := applier.Plan(ctx, objs, apply.Options{Owner: apply.Owner(owner)})
	if err != nil {
		t.Fatal(err)
	}
	actions := func(diffs []ObjectDiff) map[string]string {
		out := map[string]string{}
		for _, d := range diffs {
			out[d.Object] = d.Action
			if strings.Contains(d.Unified, password) || strings.Contains(d.Unified, "changed-by-hand") {
				t.Errorf("%s: a Secret value is shown:\n%s", d.Object, d.Unified)
			}
		}
		return out
	}
	all := func(action string) map[string]string {
		return map[string]string{
			"ConfigMap/" + ns + "/settings": action,
			"Secret/" + ns + "/credentials": action,
			"Deployment/" + ns + "/web":     action,
			"Service/" + ns + "/web":        action,
		}
	}
	diff := func(o DiffOptions, objs []*unstructured.Unstructured) []ObjectDiff {
		t.Helper()
		diffs, err := Diff(ctx, k8s, objs, o)
		if err != nil {
			t.Fatal(err)
		}
		return diffs
	}

	if d := cmp.Diff(all(DiffCreate), actions(diff(DiffOptions{}, plan.Objects))); d != "" {
		t.Errorf("before the sync (-want +got):\n%s", d)
	}
	h.applyAndRecord(t, owner, objs)
	if d := cmp.Diff(all(DiffUnchanged), actions(diff(DiffOptions{}, plan.Objects))); d != "" {
		t.Errorf("after the sync (-want +got):\n%s", d)
	}
	unlabelled := readObjects(t, "app.yaml", map[string]string{"PASSWORD": password})
	for _, o := range unlabelled {
		o.SetNamespace(ns)
	}
	drop := DiffOptions{DropLabels: []string{v1alpha1.NameLabel, v1alpha1.NamespaceLabel}}
	if d := cmp.Diff(all(DiffUnchanged), actions(diff(drop, unlabelled))); d != "" {
		t.Errorf("without owner labels (-want +got):\n%s", d)
	}

	patch(t, configMap(ns, "settings"), "kubectl-edit", `{"data":{"greeting":"hi"}}`)
	patch(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "credentials"}},
		"kubectl-edit", `{"stringData":{"password":"changed-by-hand"}}`)
	diffs := diff(DiffOptions{}, plan.Objects)
	want := all(DiffUnchanged)
	want["ConfigMap/"+ns+"/settings"] = DiffUpdate
	want["Secret/"+ns+"/credentials"] = DiffUpdate
	if d := cmp.Diff(want, actions(diffs)); d != "" {
		t.Errorf("after edits (-want +got):\n%s", d)
	}
	for _, d := range diffs {
		switch d.Object {
		case "ConfigMap/" + ns + "/settings":
			for _, line := range []string{"--- live/" + d.Object, "+++ git/" + d.Object, "-  greeting: hi", "+  greeting: hello"} {
				if !strings.Contains(d.Unified, line+"\n") {
					t.Errorf("ConfigMap diff lacks %q:\n%s", line, d.Unified)
				}
			}
		case "Secret/" + ns + "/credentials":
			for _, line := range []string{"-  password: '*** (before)'", "+  password: '*** (after)'"} {
				if !strings.Contains(d.Unified, line+"\n") {
					t.Errorf("Secret diff lacks %q:\n%s", line, d.Unified)
				}
			}
		}
	}
}
