package render

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// testdata returns the absolute path of a fixture under testdata/.
func testdata(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ids lists "Kind namespace/name" for each object, in order.
func ids(objs []*unstructured.Unstructured) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName()))
	}
	return out
}

// find returns the object of that kind and name, failing the test if absent.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s in %v", kind, name, ids(objs))
	return nil
}

// nested reads a nested field, failing the test if absent.
func nested(t *testing.T, o *unstructured.Unstructured, path ...string) any {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(o.Object, path...)
	if err != nil || !ok {
		t.Fatalf("%s %s: no field %v (%v)", o.GetKind(), o.GetName(), path, err)
	}
	return v
}

// container returns the first container of a Deployment.
func container(t *testing.T, o *unstructured.Unstructured) map[string]any {
	t.Helper()
	cs := nested(t, o, "spec", "template", "spec", "containers").([]any)
	return cs[0].(map[string]any)
}

// userError asserts err is an *Error with that Path whose message contains
// every one of want.
func userError(t *testing.T, err error, path string, want ...string) {
	t.Helper()
	var rerr *Error
	if !errors.As(err, &rerr) {
		t.Fatalf("want *render.Error, got %T: %v", err, err)
	}
	if rerr.Path != path {
		t.Errorf("Error.Path = %q, want %q (%v)", rerr.Path, path, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestRenderKustomize(t *testing.T) {
	tests := []struct {
		name  string
		path  string
		want  []string
		check func(t *testing.T, objs []*unstructured.Unstructured)
	}{{
		name: "base",
		path: "base",
		want: []string{"Deployment /web", "Service /web"},
	}, {
		name: "staging overlay: namespace, strategic merge patch, image tag",
		path: "./overlays/staging",
		want: []string{"Deployment staging/web", "Service staging/web"},
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			d := find(t, objs, "Deployment", "web")
			if got := nested(t, d, "spec", "replicas"); got != int64(2) {
				t.Errorf("replicas = %v, want 2", got)
			}
			if got := container(t, d)["image"]; got != "ghcr.io/example/web:1.1.0-rc.1" {
				t.Errorf("image = %v", got)
			}
		},
	}, {
		name: "production overlay: component, JSON6902 patch, patch from a sibling folder, image name",
		path: "overlays/production/",
		want: []string{"Deployment production/web", "Service production/web", "ConfigMap production/scrape-config"},
		check: func(t *testing.T, objs []*unstructured.Unstructured) {
			d := find(t, objs, "Deployment", "web")
			if got := nested(t, d, "spec", "replicas"); got != int64(5) {
				t.Errorf("replicas = %v, want 5 (JSON6902 patch)", got)
			}
			c := container(t, d)
			if got := c["image"]; got != "registry.example.com/web:1.0.1" {
				t.Errorf("image = %v", got)
			}
			if diff := cmp.Diff(map[string]any{"limits": map[string]any{"memory": "256Mi"}}, c["resources"]); diff != "" {
				t.Errorf("resources from ../../shared patch (-want +got):\n%s", diff)
			}
			s := find(t, objs, "Service", "web")
			if got := s.GetAnnotations()["prometheus.io/scrape"]; got != "true" {
				t.Errorf("component patch annotation = %q", got)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Render(context.Background(), Options{Root: testdata(t, "app"), Path: tt.path})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, ids(res.Objects)); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
			if len(res.Hash) != 64 {
				t.Errorf("hash %q is not hex sha256", res.Hash)
			}
			if tt.check != nil {
				tt.check(t, res.Objects)
			}
		})
	}
}

func TestRenderPlainFolder(t *testing.T) {
	root := testdata(t, "plain")
	before := snapshot(t, root)
	for _, path := range []string{"", ".", "./"} {
		res, err := Render(context.Background(), Options{Root: root, Path: path})
		if err != nil {
			t.Fatal(err)
		}
		// Lexical walk order; .hidden/ and README.md skipped; the folder
		// with its own kustomization rendered through it (namePrefix).
		want := []string{
			"ConfigMap plain/db",
			"ConfigMap plain/web",
			"ConfigMap plain/web-extra",
			"ConfigMap plain/cache-settings",
			"Namespace /plain",
		}
		if diff := cmp.Diff(want, ids(res.Objects)); diff != "" {
			t.Errorf("path %q: objects (-want +got):\n%s", path, diff)
		}
	}
	if diff := cmp.Diff(before, snapshot(t, root)); diff != "" {
		t.Errorf("render changed the checkout (-before +after):\n%s", diff)
	}
}

func TestRenderPlainFolderNested(t *testing.T) {
	// A plain subfolder of a repository whose root has a kustomization.
	root := t.TempDir()
	write(t, root, "kustomization.yaml", "resources: [apps]\n")
	write(t, root, "apps/a/one.yaml", configMap("one"))
	write(t, root, "apps/b/c/two.yml", configMap("two"))
	write(t, root, "apps/notes.txt", "not yaml")
	before := snapshot(t, root)
	res, err := Render(context.Background(), Options{Root: root, Path: "apps"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ConfigMap /one", "ConfigMap /two"}, ids(res.Objects)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, snapshot(t, root)); diff != "" {
		t.Errorf("render changed the checkout (-before +after):\n%s", diff)
	}
}

func TestRenderEmptyFolder(t *testing.T) {
	root := t.TempDir()
	write(t, root, "empty/README.md", "nothing here")
	_, err := Render(context.Background(), Options{Root: root, Path: "empty"})
	userError(t, err, "empty", "no Kubernetes manifests")
}

func TestRenderBrokenYAML(t *testing.T) {
	tests := []struct {
		path     string
		wantPath string
		want     []string
	}{
		{"kust", "kust/bad.yaml", []string{"line 7", "bad.yaml"}},
		{"plain", "plain/bad.yaml", []string{"line 7"}},
		{"kustfile", "kustfile/kustomization.yaml", []string{"invalid Kustomization", "line 2"}},
		{"notk8s", "notk8s/values.yaml", []string{"line 1", "not a Kubernetes object"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := Render(context.Background(), Options{Root: testdata(t, "broken"), Path: tt.path})
			userError(t, err, tt.wantPath, tt.want...)
		})
	}
}

func TestRenderContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Render(ctx, Options{Root: testdata(t, "app"), Path: "base"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// snapshot records every path under root with its mode and content.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		out[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// write creates root/name with content, and its parent directories.
func write(t testing.TB, root, name, content string) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func configMap(name string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n  k: v\n"
}

func TestRenderKustomizeErrors(t *testing.T) {
	root := t.TempDir()
	write(t, root, "base/kustomization.yaml", "resources: [good.yaml, bad.yaml]\n")
	write(t, root, "base/good.yaml", configMap("good"))
	write(t, root, "base/bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  key: value\n   broken: indentation\n")
	write(t, root, "overlays/prod/kustomization.yaml", "resources: [../../base]\n")
	write(t, root, "missing/kustomization.yaml", "resources: [nope.yaml]\n")
	write(t, root, "patch/kustomization.yaml", "resources: [cm.yaml]\npatches:\n- path: p.yaml\n")
	write(t, root, "patch/cm.yaml", configMap("cm"))
	write(t, root, "patch/p.yaml", configMap("other"))
	tests := []struct {
		path, wantPath string
		want           []string
	}{
		{"overlays/prod", "base/bad.yaml", []string{"line 7", "bad.yaml"}},
		{"missing", "missing", []string{"nope.yaml"}},
		{"patch", "patch", []string{"other"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := Render(context.Background(), Options{Root: root, Path: tt.path})
			userError(t, err, tt.wantPath, tt.want...)
			if strings.Contains(err.Error(), root) {
				t.Errorf("error leaks the checkout location: %v", err)
			}
		})
	}
}
