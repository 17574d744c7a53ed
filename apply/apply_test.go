package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"tether.dev/tether/api/v1alpha1"
)

func TestApplyCreatesThenUnchangedThenConfigured(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	opts := Options{Owner: Owner{Name: "app", Namespace: ns}}

	first := planAndApply(t, readObjects(t, "app.yaml", nil), opts)
	want := map[string]string{
		"ConfigMap/" + ns + "/settings": "created",
		"ServiceAccount/" + ns + "/web": "created",
		"Service/" + ns + "/web":        "created",
	}
	if diff := cmp.Diff(want, actions(first.ChangeSet)); diff != "" {
		t.Fatalf("first apply (-want +got):\n%s", diff)
	}
	if !first.Changed {
		t.Error("first apply: Changed = false")
	}
	wantInv := []v1alpha1.ResourceRef{
		{ID: ns + "_settings__ConfigMap", Version: "v1"},
		{ID: ns + "_web__Service", Version: "v1"},
		{ID: ns + "_web__ServiceAccount", Version: "v1"},
	}
	if diff := cmp.Diff(wantInv, first.Inventory.Entries); diff != "" {
		t.Errorf("inventory (-want +got):\n%s", diff)
	}

	live := &corev1.ConfigMap{}
	if err := k8s.Get(ctx, clientKey(configMap(ns, "settings", nil)), live); err != nil {
		t.Fatal(err)
	}
	wantLabels := map[string]string{v1alpha1.NameLabel: "app", v1alpha1.NamespaceLabel: ns}
	if diff := cmp.Diff(wantLabels, live.Labels); diff != "" {
		t.Errorf("owner labels (-want +got):\n%s", diff)
	}
	var managers []string
	for _, f := range live.ManagedFields {
		managers = append(managers, f.Manager+"/"+string(f.Operation))
	}
	if diff := cmp.Diff([]string{"tether/Apply"}, managers); diff != "" {
		t.Errorf("field managers (-want +got):\n%s", diff)
	}

	second := planAndApply(t, readObjects(t, "app.yaml", nil), opts)
	for k := range want {
		want[k] = "unchanged"
	}
	if diff := cmp.Diff(want, actions(second.ChangeSet)); diff != "" {
		t.Fatalf("second apply (-want +got):\n%s", diff)
	}
	if second.Changed {
		t.Error("second apply: Changed = true")
	}

	objs := readObjects(t, "app.yaml", nil)
	objs[0].Object["data"] = map[string]any{"greeting": "hi"}
	third := planAndApply(t, objs, opts)
	want["ConfigMap/"+ns+"/settings"] = "configured"
	if diff := cmp.Diff(want, actions(third.ChangeSet)); diff != "" {
		t.Fatalf("third apply (-want +got):\n%s", diff)
	}
	if !third.Changed {
		t.Error("third apply: Changed = false")
	}
	if err := k8s.Get(ctx, clientKey(live), live); err != nil {
		t.Fatal(err)
	}
	if live.Data["greeting"] != "hi" {
		t.Errorf("live data = %v, want greeting: hi", live.Data)
	}
}

func TestApplyCRDAndCustomResource(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	// The CRD is cluster-scoped: another test (or run, with -count) may
	// have created it already.
	crdAction := "unchanged"
	crd := obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets.test.tether.dev")
	if err := k8s.Get(ctx, clientKey(crd), crd); apierrors.IsNotFound(err) {
		crdAction = "created"
	} else if err != nil {
		t.Fatal(err)
	}
	res := planAndApply(t, readObjects(t, "crd.yaml", nil), crdOptions(ns))
	want := map[string]string{
		"CustomResourceDefinition/widgets.test.tether.dev": crdAction,
		"Widget/" + ns + "/sprocket":                       "created",
	}
	if diff := cmp.Diff(want, actions(res.ChangeSet)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	w := &unstructured.Unstructured{}
	w.SetGroupVersionKind(schema.GroupVersionKind{Group: "test.tether.dev", Version: "v1", Kind: "Widget"})
	if err := k8s.Get(ctx, clientKey(obj("test.tether.dev/v1", "Widget", ns, "sprocket")), w); err != nil {
		t.Fatal(err)
	}
	if size, _, _ := unstructured.NestedInt64(w.Object, "spec", "size"); size != 3 {
		t.Errorf("spec.size = %d, want 3", size)
	}
	// Applied again, both are unchanged and the CRD wait does not block.
	again := planAndApply(t, readObjects(t, "crd.yaml", nil), crdOptions(ns))
	if again.Changed {
		t.Errorf("second apply changed: %v", again.ChangeSet)
	}
}

// crdOptions applies crd.yaml's Widget into ns. Every test that applies
// the cluster-scoped CRD does it as the same GitSync: under two owners the
// second would get an ownership conflict.
func crdOptions(ns string) Options {
	return Options{Owner: Owner{Name: "widgets", Namespace: "crd-tests"}, TargetNamespace: ns}
}

func TestApplyAcrossNamespaces(t *testing.T) {
	ctx := testContext(t)
	owner := newNamespace(t)
	a, b := owner+"-a", owner+"-b"
	res := planAndApply(t, readObjects(t, "two-namespaces.yaml", map[string]string{"A": a, "B": b}),
		Options{Owner: Owner{Name: "tenants", Namespace: owner}})
	wantCounts := []v1alpha1.NamespaceCount{{Namespace: "", Objects: 3}, {Namespace: a, Objects: 2}, {Namespace: b, Objects: 1}}
	if diff := cmp.Diff(wantCounts, res.Namespaces); diff != "" {
		t.Errorf("namespace counts (-want +got):\n%s", diff)
	}
	want := map[string]string{
		"Namespace/" + a: "created", "Namespace/" + b: "created", "ClusterRole/" + a + "-reader": "created",
		"ConfigMap/" + a + "/one": "created", "ConfigMap/" + a + "/two": "created", "ConfigMap/" + b + "/one": "created",
	}
	if diff := cmp.Diff(want, actions(res.ChangeSet)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Cluster definitions come first in the change set: they are a stage.
	for i, e := range res.ChangeSet.Entries[:3] {
		if e.ObjMetadata.Namespace != "" {
			t.Errorf("entry %d is %s, want a cluster definition", i, e.Subject)
		}
	}
	if err := k8s.Get(ctx, clientKey(configMap(b, "one", nil)), &corev1.ConfigMap{}); err != nil {
		t.Error(err)
	}
}

func TestApplyImmutableField(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	opts := Options{Owner: Owner{Name: "jobs", Namespace: ns}}
	job := func(image, force string) []*unstructured.Unstructured {
		return readObjects(t, "job.yaml", map[string]string{"IMAGE": image, "FORCE": force})
	}
	planAndApply(t, job("busybox:1.36", "disabled"), opts)
	before := &unstructured.Unstructured{}
	before.SetGroupVersionKind(schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"})
	if err := k8s.Get(ctx, clientKey(obj("batch/v1", "Job", ns, "migrate")), before); err != nil {
		t.Fatal(err)
	}

	plan, err := testManager.Plan(ctx, job("busybox:1.37", "disabled"), opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = testManager.Apply(ctx, plan)
	if err == nil {
		t.Fatal("changing a Job's spec.template applied; want an immutable-field error")
	}
	for _, w := range []string{"Job/" + ns + "/migrate apply failed: ", "spec.template", "tether.dev/force: enabled"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\ndoes not contain %q", err, w)
		}
	}
	var oe *ObjectError
	if !errors.As(err, &oe) || oe.Object != "Job/"+ns+"/migrate" {
		t.Errorf("no *ObjectError for the Job in %v", err)
	}
	if !errors.Is(err, ErrImmutableField) || !IsUserError(err) {
		t.Errorf("errors.Is(ErrImmutableField) = %v, IsUserError = %v; want both", errors.Is(err, ErrImmutableField), IsUserError(err))
	}
	t.Logf("immutable error: %v", err)

	res := planAndApply(t, job("busybox:1.37", "enabled"), opts)
	if diff := cmp.Diff(map[string]string{"Job/" + ns + "/migrate": "created"}, actions(res.ChangeSet)); diff != "" {
		t.Errorf("forced apply (-want +got):\n%s", diff)
	}
	after := before.DeepCopy()
	if err := k8s.Get(ctx, clientKey(before), after); err != nil {
		t.Fatal(err)
	}
	if after.GetUID() == before.GetUID() {
		t.Error("the Job was not recreated: same UID")
	}
	containers, _, _ := unstructured.NestedSlice(after.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 || containers[0].(map[string]any)["image"] != "busybox:1.37" {
		t.Errorf("containers = %v, want image busybox:1.37", containers)
	}
}

func TestApplyWaitTimeout(t *testing.T) {
	// A wait that cannot succeed in time reports it instead of hanging.
	ns := newNamespace(t)
	objs := readObjects(t, "crd.yaml", nil)
	opts := crdOptions(ns)
	opts.Timeout = time.Nanosecond
	plan, err := testManager.Plan(testContext(t), objs, opts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = testManager.Apply(testContext(t), plan)
	if err == nil || IsUserError(err) || !strings.Contains(err.Error(), "wait for cluster definitions") {
		t.Errorf("err = %v; want a transient wait error", err)
	}
}

// TestApplyGroupFailureIsolated: a namespace group that fails does not stop
// the others, and the error names the object and is transient.
func TestApplyGroupFailureIsolated(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	missing := ns + "-missing" // never created
	plan, err := testManager.Plan(ctx, []*unstructured.Unstructured{
		configMap("", "fine", nil), configMap(missing, "lost", nil),
	}, Options{Owner: Owner{Name: "app", Namespace: ns}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := testManager.Apply(ctx, plan)
	if err == nil {
		t.Fatal("apply into a missing namespace succeeded")
	}
	if !strings.HasPrefix(err.Error(), "ConfigMap/"+missing+"/lost ") || IsUserError(err) {
		t.Errorf("err = %v (user error %v); want a transient error led by ConfigMap/%s/lost", err, IsUserError(err), missing)
	}
	if diff := cmp.Diff(map[string]string{"ConfigMap/" + ns + "/fine": "created"}, actions(res.ChangeSet)); diff != "" {
		t.Errorf("change set (-want +got):\n%s", diff)
	}
	if err := k8s.Get(ctx, clientKey(configMap(ns, "fine", nil)), &corev1.ConfigMap{}); err != nil {
		t.Errorf("the other group was not applied: %v", err)
	}
}

func TestIsUserError(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("connection refused"), false},
		{&ObjectError{Object: "ConfigMap/a/b", Err: ErrNamespaceNotAllowed}, true},
		{fmt.Errorf("plan: %w", joinedError{errors.New("x"), ErrUnknownKind}), true},
		{apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "b", nil), true},
		{apierrors.NewBadRequest("no"), true},
		{apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "a"), false},
		{apierrors.NewServiceUnavailable("later"), false},
		{&meta.NoKindMatchError{GroupKind: schema.GroupKind{Kind: "Widget"}}, true},
		{context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		if got := IsUserError(tt.err); got != tt.want {
			t.Errorf("IsUserError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
