package drift

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/apply"
)

var configMapsGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// resync is a forced sync of objs for owner as the sync loop makes it:
// plan, apply with Skip from the tracker, record. It returns what Skip
// said of each object (by name), the actions, and the API requests the
// apply made.
func (h *harness) resync(t *testing.T, owner Owner, objs []*unstructured.Unstructured) (skipped, actions map[string]string, requests int64) {
	t.Helper()
	ctx := testContext(t)
	reqs := &counter{}
	c, err := client.New(countedConfig(reqs), client.Options{Mapper: k8s.RESTMapper()})
	if err != nil {
		t.Fatal(err)
	}
	m := apply.NewManager(c, apply.ManagerOptions{})
	plan, err := m.Plan(ctx, objs, apply.Options{Owner: apply.Owner(owner)})
	if err != nil {
		t.Fatal(err)
	}
	skip := h.tracker.Unchanged(owner)
	skipped = map[string]string{}
	for _, o := range plan.Objects {
		if skip(o) {
			skipped[o.GetKind()+"/"+o.GetName()] = "skip"
		}
	}
	plan.Options.Skip = skip
	reqs.n.Store(0)
	res, err := m.Apply(ctx, plan)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	requests = reqs.n.Load()
	if err := h.tracker.Record(ctx, owner, plan.Objects, res.Live); err != nil {
		t.Fatal(err)
	}
	actions = map[string]string{}
	for _, e := range res.ChangeSet.Entries {
		actions[e.ObjMetadata.GroupKind.Kind+"/"+e.ObjMetadata.Name] = string(e.Action)
	}
	return skipped, actions, requests
}

// waitEchoes waits until the watch cache holds every recorded object of
// owner at its recorded version: the state in which nothing changed since
// the apply.
func (h *harness) waitEchoes(t testing.TB, owner Owner) {
	t.Helper()
	h.tracker.mu.Lock()
	var want []*entry
	for _, e := range h.tracker.owners[owner].entries {
		want = append(want, e)
	}
	h.tracker.mu.Unlock()
	for _, e := range want {
		h.waitCached(t, e.key.gvr, e.key.namespace, e.key.name, e.rv)
	}
}

// TestUnchangedSkipsOnlyWhatIsAsApplied: a forced resync with nothing
// changed sends no request; an out-of-band edit, a deletion, a changed
// render and an object never recorded are each applied, and only they.
func TestUnchangedSkipsOnlyWhatIsAsApplied(t *testing.T) {
	h, owner := setup(t)
	ns := owner.Namespace
	render := func() []*unstructured.Unstructured {
		return readObjects(t, "app.yaml", map[string]string{"PASSWORD": password})
	}
	all := map[string]string{"ConfigMap/settings": "skip", "Secret/credentials": "skip", "Deployment/web": "skip", "Service/web": "skip"}
	except := func(name string) map[string]string {
		out := map[string]string{}
		for k, v := range all {
			if k != name {
				out[k] = v
			}
		}
		return out
	}
	unchanged := map[string]string{"ConfigMap/settings": "unchanged", "Secret/credentials": "unchanged", "Deployment/web": "unchanged", "Service/web": "unchanged"}
	with := func(name, action string) map[string]string {
		out := map[string]string{name: action}
		for k, v := range unchanged {
			if k != name {
				out[k] = v
			}
		}
		return out
	}
	step := func(name string, objs []*unstructured.Unstructured, wantSkipped, wantActions map[string]string) {
		t.Helper()
		skipped, actions, requests := h.resync(t, owner, objs)
		if diff := cmp.Diff(wantSkipped, skipped); diff != "" {
			t.Errorf("%s: skipped (-want +got):\n%s", name, diff)
		}
		if diff := cmp.Diff(wantActions, actions); diff != "" {
			t.Errorf("%s: actions (-want +got):\n%s", name, diff)
		}
		if len(wantSkipped) == len(objs) && requests != 0 {
			t.Errorf("%s: %d API requests, want 0", name, requests)
		}
		if len(wantSkipped) < len(objs) && requests == 0 {
			t.Errorf("%s: no API request, want the changed object applied", name)
		}
		// This resync's echoes arrive before the next out-of-band change.
		h.waitEchoes(t, owner)
	}

	h.waitEchoes(t, owner)

	step("nothing changed", render(), all, unchanged)

	// A status write is not a change: still nothing sent.
	h.waitCached(t, deploymentsGVR, ns, "web", writeStatus(t, ns, 2))
	step("status written", render(), all, unchanged)

	cm := configMap(ns, "settings")
	patch(t, cm, "kubectl-edit", `{"data":{"greeting":"edited"}}`)
	h.waitCached(t, configMapsGVR, ns, "settings", cm.ResourceVersion)
	step("out-of-band edit", render(), except("ConfigMap/settings"), with("ConfigMap/settings", "configured"))

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
	if err := k8s.Delete(testContext(t), svc); err != nil {
		t.Fatal(err)
	}
	h.waitChange(t, owner)
	step("deleted", render(), except("Service/web"), with("Service/web", "created"))

	changed := render()
	changed[0].Object["data"] = map[string]any{"greeting": "from a new commit"}
	step("changed render", changed, except("ConfigMap/settings"), with("ConfigMap/settings", "configured"))

	withExtra := append(changed, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "extra"}, "data": map[string]any{"k": "v"},
	}})
	wantActions := with("ConfigMap/extra", "created")
	wantActions["ConfigMap/settings"] = "unchanged"
	step("never recorded", withExtra, all, wantActions)
}
