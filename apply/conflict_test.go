package apply

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"tether.dev/tether/api/v1alpha1"
)

// TestApplyOwnershipConflict: two GitSyncs claim one ConfigMap. The second
// gets an *OwnershipConflictError naming the object and the first owner,
// and nothing of its set is applied: the ConfigMap keeps the first owner's
// data and labels, and the second's other object is not created.
func TestApplyOwnershipConflict(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	first := Options{Owner: Owner{Name: "first", Namespace: ns}}
	second := Options{Owner: Owner{Name: "second", Namespace: ns}}
	planAndApply(t, configMapsWith("shared", "first"), first)

	plan, err := testManager.Plan(ctx, append(configMapsWith("shared", "second"), configMap("", "only-second", nil)), second)
	if err != nil {
		t.Fatal(err)
	}
	res, err := testManager.Apply(ctx, plan)
	var conflict *OwnershipConflictError
	if !errors.As(err, &conflict) || !errors.Is(err, ErrOwnershipConflict) || !IsUserError(err) {
		t.Fatalf("apply by the second owner: %v, want an ownership conflict", err)
	}
	want := OwnershipConflictError{Object: "ConfigMap/" + ns + "/shared", Owner: first.Owner}
	if diff := cmp.Diff(want, *conflict); diff != "" {
		t.Errorf("conflict (-want +got):\n%s", diff)
	}
	if res == nil || len(res.ChangeSet.Entries) != 0 || res.Changed {
		t.Errorf("result = %+v, want nothing applied", res)
	}

	live := &corev1.ConfigMap{}
	if err := k8s.Get(ctx, clientKey(configMap(ns, "shared", nil)), live); err != nil {
		t.Fatal(err)
	}
	if live.Data["owner"] != "first" || live.Labels[v1alpha1.NameLabel] != "first" {
		t.Errorf("the shared ConfigMap changed: data %v, labels %v", live.Data, live.Labels)
	}
	err = k8s.Get(ctx, clientKey(configMap(ns, "only-second", nil)), &corev1.ConfigMap{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("the second owner's other object: %v, want not found", err)
	}
}

// TestApplyAdoptsUnlabelled: an object made by hand (no owner labels) is
// adopted: applied, and labelled as the owner's.
func TestApplyAdoptsUnlabelled(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	byHand := &corev1.ConfigMap{ObjectMeta: objectMeta(ns, "shared"), Data: map[string]string{"owner": "hand"}}
	if err := k8s.Create(ctx, byHand); err != nil {
		t.Fatal(err)
	}
	res := planAndApply(t, configMapsWith("shared", "app"), Options{Owner: Owner{Name: "app", Namespace: ns}})
	if diff := cmp.Diff(map[string]string{"ConfigMap/" + ns + "/shared": "configured"}, actions(res.ChangeSet)); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	live := &corev1.ConfigMap{}
	if err := k8s.Get(ctx, clientKey(byHand), live); err != nil {
		t.Fatal(err)
	}
	if live.Data["owner"] != "app" || live.Labels[v1alpha1.NameLabel] != "app" || live.Labels[v1alpha1.NamespaceLabel] != ns {
		t.Errorf("not adopted: data %v, labels %v", live.Data, live.Labels)
	}
}

// configMapsWith is one ConfigMap name whose data says who applied it.
func configMapsWith(name, owner string) []*unstructured.Unstructured {
	return []*unstructured.Unstructured{configMap("", name, map[string]string{"owner": owner})}
}
