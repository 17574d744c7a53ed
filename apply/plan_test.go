package apply

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"tether.dev/tether/api/v1alpha1"
)

// TestPlan checks normalisation and validation against the real API
// server's RESTMapper; Plan writes nothing, so the cases share one owner.
func TestPlan(t *testing.T) {
	owner := Owner{Name: "app", Namespace: "team"}
	crdSet := readObjects(t, "crd.yaml", nil)
	tests := []struct {
		name    string
		objs    []*unstructured.Unstructured
		opts    Options
		want    []string // "apiVersion Kind namespace/name" in apply order
		wantErr []string // substrings of the error, one per refused object
		is      error
	}{
		{
			name: "owner namespace is the default",
			objs: []*unstructured.Unstructured{obj("v1", "ConfigMap", "", "a"), obj("v1", "ConfigMap", "other", "b")},
			want: []string{"v1 ConfigMap other/b", "v1 ConfigMap team/a"},
		},
		{
			name: "target namespace fills only empty namespaces",
			objs: []*unstructured.Unstructured{obj("v1", "ConfigMap", "", "a"), obj("v1", "ConfigMap", "other", "b")},
			opts: Options{TargetNamespace: "prod"},
			want: []string{"v1 ConfigMap other/b", "v1 ConfigMap prod/a"},
		},
		{
			name: "cluster-scoped objects lose a stray namespace",
			objs: []*unstructured.Unstructured{obj("rbac.authorization.k8s.io/v1", "ClusterRole", "team", "reader")},
			want: []string{"rbac.authorization.k8s.io/v1 ClusterRole /reader"},
		},
		{
			name: "stable apply order whatever the input order",
			objs: []*unstructured.Unstructured{
				obj("apps/v1", "Deployment", "", "web"), obj("v1", "ConfigMap", "", "z"),
				obj("v1", "Namespace", "", "team"), obj("v1", "ConfigMap", "", "a"),
				obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "x.y.z"),
			},
			want: []string{
				"apiextensions.k8s.io/v1 CustomResourceDefinition /x.y.z", "v1 Namespace /team",
				"v1 ConfigMap team/a", "v1 ConfigMap team/z", "apps/v1 Deployment team/web",
			},
		},
		{
			name: "allowed namespaces",
			objs: []*unstructured.Unstructured{obj("v1", "Namespace", "", "prod"), obj("v1", "ConfigMap", "", "a"), obj("v1", "ConfigMap", "prod", "b")},
			opts: Options{AllowedNamespaces: []string{"team", "prod"}},
			want: []string{"v1 Namespace /prod", "v1 ConfigMap prod/b", "v1 ConfigMap team/a"},
		},
		{
			name:    "namespaced object outside allowed namespaces",
			objs:    []*unstructured.Unstructured{obj("v1", "ConfigMap", "", "a"), obj("v1", "ConfigMap", "kube-system", "b")},
			opts:    Options{AllowedNamespaces: []string{"team"}},
			wantErr: []string{`ConfigMap/kube-system/b namespace not allowed: "kube-system" is not in allowedNamespaces [team]`},
			is:      ErrNamespaceNotAllowed,
		},
		{
			name:    "target namespace outside allowed namespaces",
			objs:    []*unstructured.Unstructured{obj("v1", "ConfigMap", "", "a")},
			opts:    Options{TargetNamespace: "prod", AllowedNamespaces: []string{"team"}},
			wantErr: []string{`ConfigMap/prod/a namespace not allowed`},
			is:      ErrNamespaceNotAllowed,
		},
		{
			name: "cluster-scoped objects refused with allowed namespaces",
			objs: []*unstructured.Unstructured{
				obj("rbac.authorization.k8s.io/v1", "ClusterRole", "", "reader"),
				obj("v1", "Namespace", "", "team"), obj("v1", "Namespace", "", "kube-public"),
			},
			opts: Options{AllowedNamespaces: []string{"team"}},
			wantErr: []string{
				"ClusterRole/reader namespace not allowed: cluster-scoped objects are refused",
				`Namespace/kube-public namespace not allowed: Namespace "kube-public" is not in allowedNamespaces [team]`,
			},
			is: ErrNamespaceNotAllowed,
		},
		{
			name: "duplicates, also after defaulting",
			objs: []*unstructured.Unstructured{
				obj("v1", "ConfigMap", "", "a"), obj("v1", "ConfigMap", "team", "a"),
				obj("apps/v1", "Deployment", "", "web"), obj("apps/v1", "Deployment", "", "web"), obj("apps/v1", "Deployment", "", "web"),
				obj("v1", "ConfigMap", "other", "a"),
			},
			wantErr: []string{
				"ConfigMap/team/a duplicate object: it appears 2 times",
				"Deployment/team/web duplicate object: it appears 3 times",
			},
			is: ErrDuplicateObject,
		},
		{
			name:    "unknown kind",
			objs:    []*unstructured.Unstructured{obj("test.tether.dev/v1", "Gadget", "", "g"), obj("v1", "ConfigMap", "", "a")},
			wantErr: []string{"Gadget/g unknown kind: test.tether.dev/v1, Kind=Gadget is not served"},
			is:      ErrUnknownKind,
		},
		{
			name:    "unknown version of a CRD in the set",
			objs:    append(clone(crdSet), obj("test.tether.dev/v2", "Widget", "", "w")),
			wantErr: []string{`Widget/w unknown kind: the CustomResourceDefinition of Widget.test.tether.dev in this set has no version "v2"`},
			is:      ErrUnknownKind,
		},
		{
			name: "custom resource of a CRD in the same set",
			objs: clone(crdSet),
			want: []string{
				"apiextensions.k8s.io/v1 CustomResourceDefinition /widgets.test.tether.dev",
				"test.tether.dev/v1 Widget team/sprocket",
			},
		},
		{
			name:    "object without a name",
			objs:    []*unstructured.Unstructured{obj("v1", "ConfigMap", "", "")},
			wantErr: []string{"invalid object: apiVersion, kind and metadata.name are required"},
			is:      ErrInvalidObject,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Owner = owner
			before := idents(tt.objs)
			plan, err := testManager.Plan(testContext(t), tt.objs, tt.opts)
			if diff := cmp.Diff(before, idents(tt.objs)); diff != "" {
				t.Errorf("Plan changed its input (-before +after):\n%s", diff)
			}
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("plan succeeded, want an error naming %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q\ndoes not contain %q", err, w)
					}
				}
				if !errors.Is(err, tt.is) || !IsUserError(err) {
					t.Errorf("errors.Is(err, %v) = %v, IsUserError = %v; want both true", tt.is, errors.Is(err, tt.is), IsUserError(err))
				}
				var oe *ObjectError
				if !errors.As(err, &oe) {
					t.Errorf("no *ObjectError in %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, idents(plan.Objects)); diff != "" {
				t.Fatalf("plan objects (-want +got):\n%s", diff)
			}
			for _, o := range plan.Objects {
				want := map[string]string{v1alpha1.NameLabel: "app", v1alpha1.NamespaceLabel: "team"}
				if diff := cmp.Diff(want, o.GetLabels()); diff != "" {
					t.Errorf("%s labels (-want +got):\n%s", ident(o), diff)
				}
			}
		})
	}
}

func TestPlanKeepsLabels(t *testing.T) {
	cm := configMap("", "a", nil)
	cm.SetLabels(map[string]string{"app": "web", v1alpha1.NameLabel: "someone-else"})
	plan, err := testManager.Plan(testContext(t), []*unstructured.Unstructured{cm}, Options{Owner: Owner{Name: "app", Namespace: "team"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"app": "web", v1alpha1.NameLabel: "app", v1alpha1.NamespaceLabel: "team"}
	if diff := cmp.Diff(want, plan.Objects[0].GetLabels()); diff != "" {
		t.Fatalf("labels (-want +got):\n%s", diff)
	}
}

// TestPlanRefusalWritesNothing: one object outside the allowed namespaces
// refuses the whole set, and nothing of it reaches the cluster.
func TestPlanRefusalWritesNothing(t *testing.T) {
	ctx := testContext(t)
	ns, other := newNamespace(t), newNamespace(t)
	objs := []*unstructured.Unstructured{configMap("", "inside", nil), configMap(other, "outside", nil)}
	plan, err := testManager.Plan(ctx, objs, Options{Owner: Owner{Name: "app", Namespace: ns}, AllowedNamespaces: []string{ns}})
	if err == nil || plan != nil {
		t.Fatalf("plan = %v, err = %v; want a refusal", plan, err)
	}
	if !errors.Is(err, ErrNamespaceNotAllowed) || !strings.Contains(err.Error(), "ConfigMap/"+other+"/outside") {
		t.Fatalf("err = %v; want ErrNamespaceNotAllowed naming ConfigMap/%s/outside", err, other)
	}
	for _, key := range [][2]string{{ns, "inside"}, {other, "outside"}} {
		live := configMap(key[0], key[1], nil)
		if err := k8s.Get(ctx, clientKey(live), live); !apierrors.IsNotFound(err) {
			t.Errorf("ConfigMap %s/%s: Get err = %v, want NotFound", key[0], key[1], err)
		}
	}
}

func clone(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		out[i] = o.DeepCopy()
	}
	return out
}
