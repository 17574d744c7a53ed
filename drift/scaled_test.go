package drift

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

func objectsOf(t *testing.T, docs ...string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, d := range docs {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(d), &u.Object); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

const hpaYAML = `
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web-hpa, namespace: ns}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
`

func TestScaledIn(t *testing.T) {
	deploy := `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "ns"}}`
	web := Scaled{Group: "apps", Kind: "Deployment", Namespace: "ns", Name: "web", By: "HorizontalPodAutoscaler/web-hpa"}
	for _, tc := range []struct {
		name string
		docs []string
		want []Scaled
	}{
		{"target applied", []string{deploy, hpaYAML}, []Scaled{web}},
		{"target not applied", []string{hpaYAML}, nil},
		{"target in another namespace", []string{`{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "other"}}`, hpaYAML}, nil},
		{"target of another group", []string{`{"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "ns"}}`, hpaYAML}, nil},
		{"no scaleTargetRef", []string{deploy, `{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x", "namespace": "ns"}, "spec": {}}`}, nil},
		{"bad apiVersion", []string{deploy, `{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x", "namespace": "ns"}, "spec": {"scaleTargetRef": {"apiVersion": "a/b/c", "kind": "Deployment", "name": "web"}}}`}, nil},
		{"any scaler with a scaleTargetRef", []string{deploy, `{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "web-scaler", "namespace": "ns"}, "spec": {"scaleTargetRef": {"name": "web"}}}`},
			[]Scaled{{Group: "apps", Kind: "Deployment", Namespace: "ns", Name: "web", By: "ScaledObject/web-scaler"}}},
		{"scaleTargetRef not a reference", []string{deploy, `{"apiVersion": "example.com/v1", "kind": "Scaler", "metadata": {"name": "x", "namespace": "ns"}, "spec": {"scaleTargetRef": "web"}}`}, nil},
		{"a reference elsewhere", []string{deploy, `{"apiVersion": "example.com/v1", "kind": "Scaler", "metadata": {"name": "x", "namespace": "ns"}, "spec": {"targetRef": {"name": "web"}}}`}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, scaledIn(objectsOf(t, tc.docs...))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if got, want := web.String(), "spec.replicas of Deployment/web ignored: scaled by HorizontalPodAutoscaler/web-hpa"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// scale sets Deployment web's replicas to 4 as an autoscaler would and
// waits until the watch cache shows it.
func scale(t *testing.T, h *harness, ns string) {
	t.Helper()
	d := deployment(ns)
	patch(t, d, "hpa-controller", `{"spec":{"replicas":4}}`)
	h.waitCached(t, deploymentsGVR, ns, "web", d.ResourceVersion)
}

// An autoscaler applied with its target owns the target's replicas:
// scaling is not drift, without any ignore rule; anything else still is.
func TestAutoscaledReplicasAreIgnored(t *testing.T) {
	h := newHarness(t)
	owner := Owner{Name: "app", Namespace: newNamespace(t)}
	ns := owner.Namespace
	objs := readObjects(t, "app.yaml", map[string]string{"PASSWORD": password})
	objs = append(objs, objectsOf(t, hpaYAML)...)
	objs[len(objs)-1].SetNamespace("")
	h.applyAndRecord(t, owner, objs)
	want := []Scaled{{Group: "apps", Kind: "Deployment", Namespace: ns, Name: "web", By: "HorizontalPodAutoscaler/web-hpa"}}
	if diff := cmp.Diff(want, h.tracker.Scaled(owner)); diff != "" {
		t.Fatalf("Scaled (-want +got):\n%s", diff)
	}

	scale(t, h, ns)
	if rep := check(t, h, owner); rep.Count != 0 {
		t.Errorf("scaling by the autoscaler reported: %+v", fieldsOf(rep))
	}
	// Accepted: later changes (status writes, more scaling) are judged
	// from this version, not checked again and again.
	if s := h.tracker.Suspects(owner); len(s) != 0 {
		t.Errorf("suspects after the scaling was checked: %+v", s)
	}
	// The signature Check took from its GET matches the watch cache's.
	h.waitCached(t, deploymentsGVR, ns, "web", writeStatus(t, ns, 3))
	if s := h.tracker.Suspects(owner); len(s) != 0 {
		t.Errorf("suspects after status writes on an accepted version: %+v", s)
	}

	edit := client.RawPatch(types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}]`))
	d := deployment(ns)
	if err := k8s.Patch(testContext(t), d, edit, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	h.waitCached(t, deploymentsGVR, ns, "web", d.ResourceVersion)
	want2 := map[string][]Field{ns + "_web_apps_Deployment": {
		{Path: "/spec/template/spec/containers/0/image", Change: Changed, Managers: []string{"kubectl-edit"}},
	}}
	if diff := cmp.Diff(want2, fieldsOf(check(t, h, owner))); diff != "" {
		t.Errorf("a hand edit beside the scaling (-want +got):\n%s", diff)
	}

	// Without the autoscaler in Git, replicas are Tether's again.
	h.applyAndRecord(t, owner, readObjects(t, "app.yaml", map[string]string{"PASSWORD": password}))
	if s := h.tracker.Scaled(owner); len(s) != 0 {
		t.Errorf("Scaled after the HPA left Git: %+v", s)
	}
	scale(t, h, ns)
	want3 := map[string][]Field{ns + "_web_apps_Deployment": {
		{Path: "/spec/replicas", Change: Changed, Managers: []string{"hpa-controller"}},
	}}
	if diff := cmp.Diff(want3, fieldsOf(check(t, h, owner))); diff != "" {
		t.Errorf("replicas without an autoscaler (-want +got):\n%s", diff)
	}
}
