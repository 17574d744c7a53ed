package render

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestRenderHash(t *testing.T) {
	render := func(t *testing.T, opts Options) string {
		t.Helper()
		res, err := Render(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		return res.Hash
	}
	root := t.TempDir()
	write(t, root, "app/a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: \"1\"\n  y: ${Y:=2}\n")
	write(t, root, "app/b.yaml", configMap("b"))
	opts := Options{Root: root, Path: "app"}
	base := render(t, opts)

	if got := render(t, opts); got != base {
		t.Errorf("same tree rendered twice: %s then %s", base, got)
	}
	// Field order in Git does not matter; content does.
	write(t, root, "app/a.yaml", "kind: ConfigMap\napiVersion: v1\ndata:\n  y: ${Y:=2}\n  x: \"1\"\nmetadata:\n  name: a\n")
	if got := render(t, opts); got != base {
		t.Errorf("reordered keys changed the hash: %s then %s", base, got)
	}
	if got := render(t, Options{Root: root, Path: "app", Substitute: map[string]string{"Y": "3"}}); got == base {
		t.Error("substitution did not change the hash")
	}
	write(t, root, "app/b.yaml", configMap("b2"))
	changed := render(t, opts)
	if changed == base {
		t.Error("changed object did not change the hash")
	}
	if err := os.Rename(filepath.Join(root, "app/b.yaml"), filepath.Join(root, "app/0.yaml")); err != nil {
		t.Fatal(err)
	}
	if got := render(t, opts); got == changed {
		t.Error("changed object order did not change the hash")
	}
}

// TestRenderConcurrent renders many trees at once, including one with an
// `openapi:` field (which swaps kustomize's global schema) and one with a
// custom kind (which reads it), and checks each result against a serial
// render. Run it under -race: it is what shows the kyaml/openapi races that
// schemaMu is for.
func TestRenderConcurrent(t *testing.T) {
	nested := t.TempDir() // `openapi:` in a base, found only as kustomize reads it
	write(t, nested, "base/kustomization.yaml", "openapi:\n  version: v1.21.2\nresources: [cm.yaml]\n")
	write(t, nested, "base/cm.yaml", configMap("cm"))
	write(t, nested, "overlay/kustomization.yaml", "resources: [../base]\npatches:\n- patch: |\n    apiVersion: v1\n    kind: ConfigMap\n    metadata: {name: cm}\n    data: {k: w}\n")
	cases := []Options{
		{Root: nested, Path: "overlay"},
		{Root: testdata(t, "crd")},
		{Root: testdata(t, "app"), Path: "overlays/production"},
		{Root: testdata(t, "openapi")},
		{Root: testdata(t, "plain")},
		{Root: testdata(t, "app"), Path: "overlays/staging"},
		{Root: testdata(t, "subst"), Path: "plain", Substitute: map[string]string{"APP": "x"}},
	}
	want := make([]string, len(cases))
	for i, opts := range cases {
		res, err := Render(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = res.Hash
	}
	n := 8 * len(cases)
	if testing.Short() {
		n = 2 * len(cases)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c := i % len(cases)
			res, err := Render(context.Background(), cases[c])
			if err != nil {
				t.Error(err)
				return
			}
			if res.Hash != want[c] {
				t.Errorf("%+v: concurrent hash %s, serial %s", cases[c], res.Hash, want[c])
			}
		}()
	}
	close(start)
	wg.Wait()
}

// TestBuildLockMode: a build holds schemaMu exclusively only when a
// kustomization it reads has an `openapi:` field (or an allowed remote
// base), wherever in the tree; every other build shares it.
func TestBuildLockMode(t *testing.T) {
	root := t.TempDir()
	write(t, root, "plain/kustomization.yaml", "resources: [cm.yaml]\n")
	write(t, root, "plain/cm.yaml", configMap("cm"))
	write(t, root, "base/kustomization.yaml", "openapi:\n  version: v1.21.2\nresources: [cm.yaml]\n")
	write(t, root, "base/cm.yaml", configMap("cm"))
	write(t, root, "overlay/kustomization.yaml", "resources: [../base]\n")
	for path, want := range map[string]bool{"plain": false, "overlay": true} {
		fsys := newRootFS(root, (&Options{}).limits(), true)
		m, err := kustomize(fsys, filepath.Join(root, path))
		if err != nil {
			t.Fatal(err)
		}
		if m.Size() != 1 || fsys.exclusive != want {
			t.Errorf("%s: %d objects, exclusive %v; want 1, %v", path, m.Size(), fsys.exclusive, want)
		}
	}
}
