package drift

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

const password = "s3cr3t-value-never-reported"

// setup applies the app fixture for a fresh owner and records it.
func setup(t *testing.T) (*harness, Owner) {
	t.Helper()
	h := newHarness(t)
	owner := Owner{Name: "app", Namespace: newNamespace(t)}
	h.applyAndRecord(t, owner, readObjects(t, "app.yaml", map[string]string{"PASSWORD": password}))
	return h, owner
}

// patch changes obj with a JSON merge patch under field manager manager,
// as `kubectl edit` or a controller would.
func patch(t testing.TB, obj client.Object, manager, data string, subresource ...string) {
	t.Helper()
	ctx := testContext(t)
	p := client.RawPatch(types.MergePatchType, []byte(data))
	var err error
	if len(subresource) > 0 {
		err = k8s.SubResource(subresource[0]).Patch(ctx, obj, p, client.FieldOwner(manager))
	} else {
		err = k8s.Patch(ctx, obj, p, client.FieldOwner(manager))
	}
	if err != nil {
		t.Fatalf("patch %s by %s: %v", obj.GetName(), manager, err)
	}
}

func configMap(ns, name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func deployment(ns string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
}

// fieldsOf reduces a report to "ID: fields" lines for cmp.
func fieldsOf(r *Report) map[string][]Field {
	out := map[string][]Field{}
	for _, o := range r.Drifted {
		if o.Deleted {
			out[o.ID] = []Field{{Path: "(deleted)"}}
			continue
		}
		out[o.ID] = o.Fields
	}
	return out
}

// check runs Check and fails on error.
func check(t *testing.T, h *harness, owner Owner, ignore ...IgnoreRule) *Report {
	t.Helper()
	rep, err := h.tracker.Check(testContext(t), owner, ignore)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if strings.Contains(fmt.Sprintf("%#v", rep), password) {
		t.Fatal("a report holds a Secret value")
	}
	return rep
}

func TestNoChangeMakesNoRequest(t *testing.T) {
	h, owner := setup(t)
	// The watch echoes of the apply arrive first: they must not count.
	h.waitEchoes(t, owner)
	before := h.requests.n.Load()
	if s := h.tracker.Suspects(owner); len(s) != 0 {
		t.Fatalf("suspects after a clean apply: %+v", s)
	}
	rep := check(t, h, owner)
	if rep.Count != 0 || rep.Requests != 0 {
		t.Errorf("report = %+v, want nothing drifted and no request", rep)
	}
	if n := h.requests.n.Load() - before; n != 0 {
		t.Errorf("Suspects+Check made %d API requests, want 0", n)
	}
	h.noChange(t)
	// A second sync of the same Git content keeps the record clean.
	h.applyAndRecord(t, owner, readObjects(t, "app.yaml", map[string]string{"PASSWORD": password}))
	if s := h.tracker.Suspects(owner); len(s) != 0 {
		t.Errorf("suspects after a no-change re-apply: %+v", s)
	}
}

func TestEditByAnotherManager(t *testing.T) {
	h, owner := setup(t)
	ns := owner.Namespace
	start := time.Now()
	patch(t, configMap(ns, "settings"), "kubectl-edit", `{"data":{"greeting":"hi"}}`)
	t.Logf("OnChange %v after the edit was sent", h.waitChange(t, owner).Sub(start))
	patch(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "credentials"}},
		"kubectl-edit", `{"stringData":{"password":"changed-by-hand"}}`)
	h.waitSuspects(t, owner, 2)

	rep := check(t, h, owner)
	want := map[string][]Field{
		ns + "_settings__ConfigMap": {{Path: "/data/greeting", Change: Changed, Managers: []string{"kubectl-edit"}}},
		ns + "_credentials__Secret": {{Path: "/data/password", Change: Changed, Managers: []string{"kubectl-edit"}}},
	}
	if diff := cmp.Diff(want, fieldsOf(rep)); diff != "" {
		t.Fatalf("drift (-want +got):\n%s", diff)
	}
	if rep.Requests != 4 {
		t.Errorf("first check made %d requests, want 4 (a GET and a dry-run per suspect)", rep.Requests)
	}
	for _, o := range rep.Drifted {
		if o.DetectedAt.IsZero() || !cmp.Equal(o.Managers, []string{"kubectl-edit"}) {
			t.Errorf("%s: DetectedAt %v, Managers %v", o.ID, o.DetectedAt, o.Managers)
		}
	}
	// Detect mode checks again at every sync: same versions, no request.
	again := check(t, h, owner)
	if diff := cmp.Diff(want, fieldsOf(again)); diff != "" {
		t.Errorf("second check (-want +got):\n%s", diff)
	}
	if again.Requests != 0 {
		t.Errorf("second check made %d requests, want 0", again.Requests)
	}
	// Correct mode re-applies: the record is clean again.
	h.applyAndRecord(t, owner, readObjects(t, "app.yaml", map[string]string{"PASSWORD": password}))
	if rep := check(t, h, owner); rep.Count != 0 {
		t.Errorf("after re-apply: %+v", fieldsOf(rep))
	}
}

func TestDeleteIsDrift(t *testing.T) {
	h, owner := setup(t)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: owner.Namespace, Name: "web"}}
	if err := k8s.Delete(testContext(t), svc); err != nil {
		t.Fatal(err)
	}
	h.waitChange(t, owner)
	rep := check(t, h, owner)
	if rep.Count != 1 || !rep.Drifted[0].Deleted || rep.Drifted[0].Kind != "Service" {
		t.Fatalf("report = %+v, want the Service deleted", rep.Drifted)
	}
}

func TestNotDrift(t *testing.T) {
	h, owner := setup(t)
	ns := owner.Namespace

	// A controller writes status: not even a suspect (see
	// TestStatusWritesAreNotSuspects).
	d := deployment(ns)
	patch(t, d, "kube-controller-manager",
		`{"status":{"observedGeneration":1,"replicas":2,"readyReplicas":2}}`, "status")
	h.waitCached(t, deploymentsGVR, ns, "web", d.ResourceVersion)
	if rep := check(t, h, owner); rep.Count != 0 {
		t.Errorf("status update reported: %+v", fieldsOf(rep))
	}
	if s := h.tracker.Suspects(owner); len(s) != 0 {
		t.Errorf("status update still a suspect after Check: %+v", s)
	}

	// An autoscaler owns replicas: ignored by rule, drift without it.
	patch(t, deployment(ns), "horizontal-pod-autoscaler", `{"spec":{"replicas":5}}`)
	h.waitChange(t, owner)
	ignore := IgnoreRule{Group: "apps", Kind: "Deployment", Paths: []string{"/spec/replicas"}}
	if rep := check(t, h, owner, ignore); rep.Count != 0 {
		t.Errorf("ignored path reported: %+v", fieldsOf(rep))
	}
	want := map[string][]Field{ns + "_web_apps_Deployment": {
		{Path: "/spec/replicas", Change: Changed, Managers: []string{"horizontal-pod-autoscaler"}},
	}}
	if diff := cmp.Diff(want, fieldsOf(check(t, h, owner))); diff != "" {
		t.Errorf("without the rule (-want +got):\n%s", diff)
	}

	// A label added to an object of another GitSync, which this tracker
	// watches but has no record of, is none of its business.
	other := configMap(ns, "not-ours")
	other.Labels = map[string]string{v1alpha1.NameLabel: "other", v1alpha1.NamespaceLabel: ns}
	if err := k8s.Create(testContext(t), other); err != nil {
		t.Fatal(err)
	}
	before := h.requests.n.Load()
	patch(t, other, "kubectl-label", `{"metadata":{"labels":{"team":"a"}}}`)
	h.waitCached(t, configMapsGVR, ns, "not-ours", other.ResourceVersion)
	if s := h.tracker.Suspects(owner); len(s) != 1 || s[0].Kind != "Deployment" {
		t.Errorf("suspects = %+v, want only the Deployment", s)
	}
	if n := h.requests.n.Load() - before; n != 0 {
		t.Errorf("an unowned object cost %d requests", n)
	}
}

func TestFieldsOfOtherManagers(t *testing.T) {
	h, owner := setup(t)
	ns := owner.Namespace
	// kubectl edit adds a key and an env var inside objects Tether owns
	// (flux2#2099): a re-apply would keep them.
	patch(t, configMap(ns, "settings"), "kubectl-edit", `{"data":{"extra":"added"}}`)
	patch(t, deployment(ns), "kubectl-edit",
		`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.27","env":[{"name":"MODE","value":"production"},{"name":"DEBUG","value":"1"}]}]}}}}`)
	h.waitChange(t, owner)
	h.waitSuspects(t, owner, 2)
	rep := check(t, h, owner)
	want := map[string][]Field{
		ns + "_settings__ConfigMap": {{Path: "/data/extra", Change: Added, Managers: []string{"kubectl-edit"}}},
		ns + "_web_apps_Deployment": {{Path: "/spec/template/spec/containers/0/env/1", Change: Added, Managers: []string{"kubectl-edit"}}},
	}
	if diff := cmp.Diff(want, fieldsOf(rep)); diff != "" {
		t.Fatalf("added fields (-want +got):\n%s", diff)
	}

	// Another manager sets a field Tether owns, then sets it back: the value
	// matches Git but Tether no longer owns it (kustomize-controller#870).
	h.applyAndRecord(t, owner, readObjects(t, "app.yaml", map[string]string{"PASSWORD": password}))
	patch(t, configMap(ns, "settings"), "kubectl-edit", `{"data":{"greeting":"hi"}}`)
	patch(t, configMap(ns, "settings"), "kubectl-edit", `{"data":{"greeting":"hello"}}`)
	h.waitChange(t, owner)
	rep = check(t, h, owner)
	got := fieldsOf(rep)[ns+"_settings__ConfigMap"]
	wantCM := []Field{
		{Path: "/data/extra", Change: Added, Managers: []string{"kubectl-edit"}},
		{Path: "/data/greeting", Change: TakenOver, Managers: []string{"kubectl-edit"}},
	}
	if diff := cmp.Diff(wantCM, got); diff != "" {
		t.Errorf("taken over (-want +got):\n%s", diff)
	}
}

func TestForgetStopsTracking(t *testing.T) {
	h, owner := setup(t)
	h.tracker.Forget(owner)
	patch(t, configMap(owner.Namespace, "settings"), "kubectl-edit", `{"data":{"greeting":"hi"}}`)
	if s := h.tracker.Suspects(owner); s != nil {
		t.Errorf("suspects after Forget: %+v", s)
	}
	h.tracker.mu.Lock()
	n := len(h.tracker.watches)
	h.tracker.mu.Unlock()
	if n != 0 {
		t.Errorf("%d watches left after the only owner was forgotten", n)
	}
}

func TestHoldSuppressesOwnEchoes(t *testing.T) {
	h, owner := setup(t)
	ns := owner.Namespace
	release := h.tracker.Hold(owner)
	// Tether's own apply of a new Git revision: its echoes must not call
	// OnChange, and Record ends the hold.
	objs := readObjects(t, "app.yaml", map[string]string{"PASSWORD": password})
	objs[0].Object["data"] = map[string]any{"greeting": "hi"}
	h.applyAndRecord(t, owner, objs)
	h.waitEchoes(t, owner)
	h.noChange(t)
	release() // a no-op after Record

	// A change made while held is told when the hold ends.
	release = h.tracker.Hold(owner)
	patch(t, configMap(ns, "settings"), "kubectl-edit", `{"data":{"greeting":"hey"}}`)
	h.waitSuspects(t, owner, 1)
	select {
	case c := <-h.changes:
		t.Fatalf("OnChange(%s) while held", c.owner)
	default:
	}
	release()
	h.waitChange(t, owner)
}
