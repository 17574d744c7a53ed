package apply

import (
	"context"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/ssa"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

func TestPrune(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	owner := Owner{Name: "app", Namespace: ns}
	opts := Options{Owner: owner, Prune: true}

	protected := configMap("", "protected", nil)
	protected.SetAnnotations(map[string]string{v1alpha1.PruneAnnotation: v1alpha1.Disabled})
	role := obj("rbac.authorization.k8s.io/v1", "ClusterRole", "", ns+"-gone")
	role.Object["rules"] = []any{}
	all := []*unstructured.Unstructured{
		configMap("", "keep", nil), configMap("", "gone", nil), protected,
		configMap("", "taken-over", nil), configMap("", "vanished", nil), role,
	}
	old := planAndApply(t, all, opts).Inventory

	// Another GitSync takes one object over; someone deletes another.
	takenOver := &corev1.ConfigMap{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "taken-over"}, takenOver); err != nil {
		t.Fatal(err)
	}
	takenOver.Labels[v1alpha1.NameLabel] = "other"
	if err := k8s.Update(ctx, takenOver); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, &corev1.ConfigMap{ObjectMeta: objectMeta(ns, "vanished")}); err != nil {
		t.Fatal(err)
	}

	current := planAndApply(t, []*unstructured.Unstructured{configMap("", "keep", nil)}, opts).Inventory
	cs, err := testManager.Prune(ctx, old, current, owner)
	if err != nil {
		t.Fatal(err)
	}
	// In prune order: namespaced objects (reverse name order), then the
	// cluster-scoped one; the vanished ConfigMap has no entry.
	want := []string{
		"ConfigMap/" + ns + "/taken-over skipped",
		"ConfigMap/" + ns + "/protected skipped",
		"ConfigMap/" + ns + "/gone deleted",
		"ClusterRole/" + ns + "-gone deleted",
	}
	if diff := cmp.Diff(want, entries(cs.ChangeSet.Entries)); diff != "" {
		t.Fatalf("prune (-want +got):\n%s", diff)
	}
	for name, exists := range map[string]bool{"keep": true, "gone": false, "protected": true, "taken-over": true, "vanished": false} {
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.ConfigMap{})
		if exists && err != nil || !exists && !apierrors.IsNotFound(err) {
			t.Errorf("ConfigMap %s: Get err = %v, want exists = %v", name, err, exists)
		}
	}
	if err := k8s.Get(ctx, client.ObjectKey{Name: ns + "-gone"}, &rbacv1.ClusterRole{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRole: Get err = %v, want NotFound", err)
	}

	// Pruning again finds everything already gone or protected.
	cs, err = testManager.Prune(ctx, old, current, owner)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[:2], entries(cs.ChangeSet.Entries)); diff != "" {
		t.Errorf("second prune (-want +got):\n%s", diff)
	}
}

func TestPruneOtherOwnerDeletesNothing(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	old := planAndApply(t, []*unstructured.Unstructured{configMap("", "a", nil)}, Options{Owner: Owner{Name: "app", Namespace: ns}}).Inventory
	// Same name, other namespace: a different GitSync.
	cs, err := testManager.Prune(ctx, old, nil, Owner{Name: "app", Namespace: "elsewhere"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ConfigMap/" + ns + "/a skipped"}, entries(cs.ChangeSet.Entries)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "a"}, &corev1.ConfigMap{}); err != nil {
		t.Errorf("ConfigMap a: %v", err)
	}
}

func TestPruneCustomResourceAfterCRDGone(t *testing.T) {
	// An inventory entry whose kind no longer exists counts as gone.
	ref := v1alpha1.ResourceRef{ID: "x_y_gone.tether.dev_Nothing", Version: "gone.tether.dev/v1"}
	cs, err := testManager.Prune(testContext(t), &v1alpha1.ResourceInventory{Entries: []v1alpha1.ResourceRef{ref}}, nil, Owner{Name: "a", Namespace: "x"})
	if err != nil || len(cs.ChangeSet.Entries) != 0 {
		t.Fatalf("entries = %v, err = %v; want none, nil", cs.ChangeSet.Entries, err)
	}
}

func entries(es []ssa.ChangeSetEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.String()
	}
	return out
}

func namespaceObject(name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace"}}
	u.SetName(name)
	return u
}

// TestPruneKeepsNamespaceWithForeignObjects: deleting a Namespace deletes
// everything in it, so a Namespace that left Git is kept while it holds an
// object the GitSync never applied, and deleted once it holds none.
func TestPruneKeepsNamespaceWithForeignObjects(t *testing.T) {
	ctx := testContext(t)
	home := newNamespace(t)
	team := home + "-team"
	owner := Owner{Name: "app", Namespace: home}
	opts := Options{Owner: owner, TargetNamespace: team}
	old := planAndApply(t, []*unstructured.Unstructured{namespaceObject(team), configMap(team, "ours", nil)}, opts).Inventory
	t.Cleanup(func() {
		_ = k8s.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team}})
	})

	// Someone else's object, and the ones Kubernetes puts everywhere.
	for _, obj := range []client.Object{
		&corev1.ConfigMap{ObjectMeta: objectMeta(team, "theirs")},
		&corev1.ConfigMap{ObjectMeta: objectMeta(team, "kube-root-ca.crt")},
		&corev1.ServiceAccount{ObjectMeta: objectMeta(team, "default")},
	} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	res, err := testManager.Prune(ctx, old, nil, owner)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ConfigMap/" + team + "/ours deleted", "Namespace/" + team + " skipped"}
	if diff := cmp.Diff(want, entries(res.ChangeSet.Entries)); diff != "" {
		t.Fatalf("prune (-want +got):\n%s", diff)
	}
	if len(res.Kept) != 1 || res.Kept[0].Name != team ||
		!strings.Contains(res.Kept[0].Reason, "holds 1 object(s)") || !strings.Contains(res.Kept[0].Reason, "ConfigMap/theirs") {
		t.Fatalf("kept = %+v, want the namespace kept for ConfigMap/theirs alone", res.Kept)
	}
	live := &corev1.Namespace{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: team}, live); err != nil || live.DeletionTimestamp != nil {
		t.Fatalf("namespace %s: err %v, deleting %v; want it kept", team, err, live.DeletionTimestamp)
	}

	// Once their object is gone, the namespace goes too.
	if err := k8s.Delete(ctx, &corev1.ConfigMap{ObjectMeta: objectMeta(team, "theirs")}); err != nil {
		t.Fatal(err)
	}
	res, err = testManager.Prune(ctx, old, nil, owner)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Namespace/" + team + " deleted"}, entries(res.ChangeSet.Entries)); diff != "" || len(res.Kept) != 0 {
		t.Fatalf("second prune (-want +got):\n%s\nkept: %+v", diff, res.Kept)
	}
}

// TestPruneKeepsNamespaceWhenBlind: an applier that cannot list what a
// namespace holds never deletes the namespace.
func TestPruneKeepsNamespaceWhenBlind(t *testing.T) {
	ctx := testContext(t)
	home := newNamespace(t)
	team := home + "-blind"
	owner := Owner{Name: "app", Namespace: home}
	old := planAndApply(t, []*unstructured.Unstructured{namespaceObject(team)}, Options{Owner: owner}).Inventory
	t.Cleanup(func() {
		_ = k8s.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team}})
	})

	blind := NewManager(k8s, ManagerOptions{})
	res, err := blind.Prune(ctx, old, nil, owner)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Kept) != 1 || !strings.Contains(res.Kept[0].Reason, "cannot tell what else it holds") {
		t.Fatalf("kept = %+v, want the namespace kept", res.Kept)
	}
	if err := k8s.Get(ctx, client.ObjectKey{Name: team}, &corev1.Namespace{}); err != nil {
		t.Fatalf("namespace %s: %v, want it kept", team, err)
	}
}
