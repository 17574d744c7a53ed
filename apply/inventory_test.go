package apply

import (
	"testing"

	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"tether.dev/tether/api/v1alpha1"
)

func obj(apiVersion, kind, namespace, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind}}
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

// ident is an object's identity as a string, for cmp.
func ident(u *unstructured.Unstructured) string {
	return u.GetAPIVersion() + " " + u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

func idents(objs []*unstructured.Unstructured) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = ident(o)
	}
	return out
}

func TestEntryIDRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		obj  *unstructured.Unstructured
		id   string
	}{
		{"core namespaced", obj("v1", "ConfigMap", "shop", "settings"), "shop_settings__ConfigMap"},
		{"grouped namespaced", obj("apps/v1", "Deployment", "shop", "web"), "shop_web_apps_Deployment"},
		{"cluster-scoped", obj("v1", "Namespace", "", "shop"), "_shop__Namespace"},
		{"crd", obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets.test.tether.dev"),
			"_widgets.test.tether.dev_apiextensions.k8s.io_CustomResourceDefinition"},
		{"rbac name with colon", obj("rbac.authorization.k8s.io/v1", "ClusterRole", "", "system:reader"),
			"_system__reader_rbac.authorization.k8s.io_ClusterRole"},
		{"name with underscore-free dots", obj("test.tether.dev/v1", "Widget", "a-b", "x.y"), "a-b_x.y_test.tether.dev_Widget"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EntryID(tt.obj); got != tt.id {
				t.Fatalf("EntryID = %q, want %q", got, tt.id)
			}
			inv := NewInventory([]*unstructured.Unstructured{tt.obj})
			want := []v1alpha1.ResourceRef{{ID: tt.id, Version: tt.obj.GetAPIVersion()}}
			if diff := cmp.Diff(want, inv.Entries); diff != "" {
				t.Fatalf("NewInventory (-want +got):\n%s", diff)
			}
			back, err := ParseEntry(inv.Entries[0])
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ident(tt.obj), ident(back)); diff != "" {
				t.Fatalf("ParseEntry (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseEntry(t *testing.T) {
	tests := []struct {
		name    string
		ref     v1alpha1.ResourceRef
		want    string
		wantErr bool
	}{
		{"apiVersion", v1alpha1.ResourceRef{ID: "shop_web_apps_Deployment", Version: "apps/v1"}, "apps/v1 Deployment shop/web", false},
		{"flux bare version", v1alpha1.ResourceRef{ID: "shop_web_apps_Deployment", Version: "v1"}, "apps/v1 Deployment shop/web", false},
		{"core", v1alpha1.ResourceRef{ID: "shop_settings__ConfigMap", Version: "v1"}, "v1 ConfigMap shop/settings", false},
		{"no version", v1alpha1.ResourceRef{ID: "shop_settings__ConfigMap"}, "", true},
		{"bad id", v1alpha1.ResourceRef{ID: "settings", Version: "v1"}, "", true},
		{"no name", v1alpha1.ResourceRef{ID: "shop___ConfigMap", Version: "v1"}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEntry(tt.ref)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && ident(got) != tt.want {
				t.Fatalf("got %q, want %q", ident(got), tt.want)
			}
		})
	}
}

func TestNewInventory(t *testing.T) {
	objs := []*unstructured.Unstructured{
		obj("v1", "ConfigMap", "b", "x"),
		obj("v1", "Namespace", "", "b"),
		obj("apps/v1", "Deployment", "a", "web"),
		obj("v1", "ConfigMap", "b", "x"), // repeated: recorded once
	}
	want := &v1alpha1.ResourceInventory{Entries: []v1alpha1.ResourceRef{
		{ID: "_b__Namespace", Version: "v1"},
		{ID: "a_web_apps_Deployment", Version: "apps/v1"},
		{ID: "b_x__ConfigMap", Version: "v1"},
	}}
	if diff := cmp.Diff(want, NewInventory(objs)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&v1alpha1.ResourceInventory{Entries: []v1alpha1.ResourceRef{}}, NewInventory(nil)); diff != "" {
		t.Fatalf("empty (-want +got):\n%s", diff)
	}
}

func TestDiff(t *testing.T) {
	inv := func(objs ...*unstructured.Unstructured) *v1alpha1.ResourceInventory { return NewInventory(objs) }
	var (
		crd    = obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets.test.tether.dev")
		ns     = obj("v1", "Namespace", "", "shop")
		role   = obj("rbac.authorization.k8s.io/v1", "ClusterRole", "", "reader")
		dep    = obj("apps/v1", "Deployment", "shop", "web")
		cm     = obj("v1", "ConfigMap", "shop", "settings")
		widget = obj("test.tether.dev/v1", "Widget", "shop", "sprocket")
	)
	tests := []struct {
		name     string
		old, new *v1alpha1.ResourceInventory
		want     []string
	}{
		{"nothing before", nil, inv(cm), []string{}},
		{"nothing left", inv(cm, dep), nil, []string{
			"apps/v1 Deployment shop/web", "v1 ConfigMap shop/settings"}},
		{"unchanged", inv(cm, dep), inv(dep, cm), []string{}},
		{"one left", inv(cm, dep), inv(dep), []string{"v1 ConfigMap shop/settings"}},
		{"new api version is the same object",
			&v1alpha1.ResourceInventory{Entries: []v1alpha1.ResourceRef{{ID: "shop_web_apps_Deployment", Version: "apps/v1beta2"}}},
			inv(dep), []string{}},
		{"flux-style old inventory",
			&v1alpha1.ResourceInventory{Entries: []v1alpha1.ResourceRef{{ID: "shop_web_apps_Deployment", Version: "v1"}}},
			inv(cm), []string{"apps/v1 Deployment shop/web"}},
		{"reverse stage order", inv(crd, ns, role, dep, cm, widget), inv(), []string{
			"test.tether.dev/v1 Widget shop/sprocket",
			"apps/v1 Deployment shop/web",
			"v1 ConfigMap shop/settings",
			"rbac.authorization.k8s.io/v1 ClusterRole /reader",
			"v1 Namespace /shop",
			"apiextensions.k8s.io/v1 CustomResourceDefinition /widgets.test.tether.dev",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Diff(tt.old, tt.new)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, idents(got)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
	if _, err := Diff(&v1alpha1.ResourceInventory{Entries: []v1alpha1.ResourceRef{{ID: "broken"}}}, nil); err == nil {
		t.Fatal("a broken old inventory must fail the diff, not prune blindly")
	}
}

func TestNamespaceCounts(t *testing.T) {
	got := NamespaceCounts([]*unstructured.Unstructured{
		obj("v1", "ConfigMap", "b", "x"), obj("v1", "Namespace", "", "b"),
		obj("v1", "ConfigMap", "a", "x"), obj("v1", "ConfigMap", "b", "y"),
	})
	want := []v1alpha1.NamespaceCount{{Namespace: "", Objects: 1}, {Namespace: "a", Objects: 1}, {Namespace: "b", Objects: 2}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestAddChangeSet(t *testing.T) {
	cm := object.ObjMetadata{Namespace: "app", Name: "settings", GroupKind: schema.GroupKind{Kind: "ConfigMap"}}
	deploy := object.ObjMetadata{Namespace: "app", Name: "web", GroupKind: schema.GroupKind{Group: "apps", Kind: "Deployment"}}
	svc := object.ObjMetadata{Namespace: "app", Name: "web", GroupKind: schema.GroupKind{Kind: "Service"}}
	old := &v1alpha1.ResourceInventory{Entries: []v1alpha1.ResourceRef{{ID: cm.String(), Version: "v1"}}}
	cs := ssa.NewChangeSet()
	cs.Add(ssa.ChangeSetEntry{ObjMetadata: deploy, GroupVersion: "apps/v1", Action: ssa.CreatedAction})
	cs.Add(ssa.ChangeSetEntry{ObjMetadata: cm, GroupVersion: "v1", Action: ssa.ConfiguredAction})
	cs.Add(ssa.ChangeSetEntry{ObjMetadata: svc, GroupVersion: "v1", Action: ssa.SkippedAction})
	got := AddChangeSet(old, cs)
	want := &v1alpha1.ResourceInventory{Entries: []v1alpha1.ResourceRef{
		{ID: cm.String(), Version: "v1"},
		{ID: deploy.String(), Version: "apps/v1"},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("AddChangeSet (-want +got):\n%s", diff)
	}
	if len(old.Entries) != 1 {
		t.Errorf("AddChangeSet changed its input: %+v", old)
	}
	if got := AddChangeSet(nil, nil); len(got.Entries) != 0 {
		t.Errorf("AddChangeSet(nil, nil) = %+v", got)
	}
}
