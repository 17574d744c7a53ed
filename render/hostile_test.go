package render

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// aliasBomb is a "billion laughs": 9 anchors of 9 aliases each, 9^9 nodes
// once expanded, in under 400 bytes.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n")
	b.WriteString("  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		fmt.Fprintf(&b, "  %s: &%s [%s*%s]\n", n, n, strings.Repeat("*"+prev+", ", 8), prev)
		prev = n
	}
	return b.String()
}

// renderBoth renders files as a kustomization (kustomization.yaml naming
// x.yaml) and as a plain folder, and hands each result to check.
func renderBoth(t *testing.T, body string, opts Options, check func(t *testing.T, res *Result, err error)) {
	t.Helper()
	for _, kustomized := range []bool{true, false} {
		name := "plain folder"
		if kustomized {
			name = "kustomization"
		}
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, "app/x.yaml", body)
			if kustomized {
				write(t, root, "app/kustomization.yaml", "resources: [x.yaml]\n")
			}
			opts.Root, opts.Path = root, "app"
			res, err := Render(context.Background(), opts)
			check(t, res, err)
		})
	}
}

// refused asserts a user error about path that says every one of want,
// and no objects.
func refused(t *testing.T, res *Result, err error, path string, want ...string) {
	t.Helper()
	if res != nil {
		t.Errorf("objects returned: %v", ids(res.Objects))
	}
	userError(t, err, path, want...)
}

func TestRenderHostileYAML(t *testing.T) {
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"
	manyKeys := cm + "data:\n"
	for i := range maxMappingKeys + 1 {
		manyKeys += fmt.Sprintf("  k%d: v\n", i)
	}
	tests := []struct {
		name, body string
		want       []string
	}{
		{"duplicate key", cm + "data:\n  k: v\n  other: x\n  k: w\n", []string{`line 8: key "k" is defined twice in one mapping (first at line 6)`}},
		{"duplicate top-level key", cm + "metadata:\n  name: y\n", []string{`key "metadata" is defined twice`}},
		{"duplicate quoted key", cm + "data:\n  \"1\": a\n  1: b\n", []string{`key "1" is defined twice`}},
		{"alias bomb", aliasBomb(), []string{"YAML aliases expand this document to more than"}},
		{"too many keys", manyKeys, []string{"line 6: a mapping with more than 10000 keys"}},
		{"complex key", cm + "data:\n  ? [a, b]\n  : c\n", []string{"a mapping key must be a string"}},
		{"invalid UTF-8", cm + "data:\n  k: \xff\xfe\n", []string{"line 6: not valid UTF-8"}},
		{"latin-1", cm + "data:\n  k: caf\xe9\n", []string{"line 6: not valid UTF-8"}},
		{"no kind", "apiVersion: v1\nmetadata:\n  name: x\n", []string{"document 1 is not a Kubernetes object (no kind)"}},
		{"no apiVersion", "kind: ConfigMap\nmetadata:\n  name: x\n", []string{"document 1 (ConfigMap) is not a Kubernetes object (no apiVersion)"}},
		{"no name", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n", []string{"document 1 (ConfigMap) has no metadata.name"}},
		{"empty name", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"\"\n", []string{"has no metadata.name"}},
		{"no metadata", "apiVersion: v1\nkind: ConfigMap\n", []string{"has no metadata.name"}},
		{"second document", cm + "---\napiVersion: v1\nkind: Secret\n", []string{"line 6: document 2 (Secret) has no metadata.name"}},
		{"list item without a name", "apiVersion: v1\nkind: ConfigMapList\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {}\n", []string{"(ConfigMap) has no metadata.name"}},
		{"list items not a list", "apiVersion: v1\nkind: ConfigMapList\nitems: {a: b}\n", []string{"items is not a list"}},
		{"not a mapping", "- a\n- b\n", []string{"document 1 is not a Kubernetes object (not a mapping)"}},
		{"scalar", "just text\n", []string{"not a Kubernetes object"}},
		{"syntax", cm + "data:\n  k: [\n", []string{"line"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			renderBoth(t, tt.body, Options{}, func(t *testing.T, res *Result, err error) {
				refused(t, res, err, "app/x.yaml", tt.want...)
			})
		})
	}
	t.Run("anchors and merge keys within bounds", func(t *testing.T) {
		body := "apiVersion: v1\nkind: ConfigMap\nmetadata: &m\n  name: x\n  labels: &l {app: web}\ndata:\n  <<: *l\n  k: v\n"
		renderBoth(t, body, Options{}, func(t *testing.T, res *Result, err error) {
			if err != nil {
				t.Fatal(err)
			}
			if got := nested(t, res.Objects[0], "data", "app"); got != "web" {
				t.Errorf("merged data.app = %v", got)
			}
		})
	})
}

// TestRenderHostileYAMLOtherFiles: kustomization files and the YAML files
// they name (patches, plugin configs) get the same checks as manifests.
func TestRenderHostileYAMLOtherFiles(t *testing.T) {
	root := t.TempDir()
	write(t, root, "kust/kustomization.yaml", "resources: [cm.yaml]\nresources: [other.yaml]\n")
	write(t, root, "kust/cm.yaml", configMap("cm"))
	write(t, root, "patch/kustomization.yaml", "resources: [cm.yaml]\npatches:\n- path: p.yaml\n")
	write(t, root, "patch/cm.yaml", configMap("cm"))
	write(t, root, "patch/p.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  k: a\n  k: b\n")
	write(t, root, "transformer/kustomization.yaml", "resources: [cm.yaml]\ntransformers: [t.yaml]\n")
	write(t, root, "transformer/cm.yaml", configMap("cm"))
	write(t, root, "transformer/t.yaml", strings.Replace(aliasBomb(), "kind: ConfigMap", "kind: LabelTransformer", 1))
	tests := []struct {
		path, wantPath string
		want           []string
	}{
		{"kust", "kust/kustomization.yaml", []string{"invalid Kustomization", `key "resources" is defined twice`}},
		{"patch", "patch/p.yaml", []string{`line 7: key "k" is defined twice`}},
		{"transformer", "transformer/t.yaml", []string{"YAML aliases expand"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res, err := Render(context.Background(), Options{Root: root, Path: tt.path})
			refused(t, res, err, tt.wantPath, tt.want...)
		})
	}
}

func TestRenderFileLimits(t *testing.T) {
	big := configMap("big") + "  pad: " + strings.Repeat("x", 1024) + "\n"
	t.Run("manifest over MaxFileBytes", func(t *testing.T) {
		renderBoth(t, big, Options{MaxFileBytes: 1024}, func(t *testing.T, res *Result, err error) {
			refused(t, res, err, "app/x.yaml", "more than the 1 KiB limit for one file")
		})
	})
	t.Run("generator file over MaxFileBytes", func(t *testing.T) {
		root := t.TempDir()
		write(t, root, "app/kustomization.yaml", "configMapGenerator:\n- name: c\n  files: [blob.bin]\n")
		write(t, root, "app/blob.bin", strings.Repeat("\x00", 2048))
		res, err := Render(context.Background(), Options{Root: root, Path: "app", MaxFileBytes: 1024})
		refused(t, res, err, "app/blob.bin", "the file is 2 KiB, more than the 1 KiB limit for one file")
	})
	t.Run("kustomization over MaxFileBytes", func(t *testing.T) {
		root := t.TempDir()
		write(t, root, "app/kustomization.yaml", "resources: [x.yaml]\n#"+strings.Repeat("x", 2048)+"\n")
		write(t, root, "app/x.yaml", configMap("x"))
		res, err := Render(context.Background(), Options{Root: root, Path: "app", MaxFileBytes: 1024})
		refused(t, res, err, "app/kustomization.yaml", "more than the 1 KiB limit")
	})
	t.Run("100 MiB file at the default limit", func(t *testing.T) {
		// Sparse: costs no disk. Were it read, the error would be a YAML one.
		for _, kustomized := range []bool{true, false} {
			root := t.TempDir()
			if kustomized {
				write(t, root, "app/kustomization.yaml", "resources: [x.yaml]\n")
			}
			write(t, root, "app/x.yaml", "")
			if err := os.Truncate(filepath.Join(root, "app/x.yaml"), 100<<20); err != nil {
				t.Fatal(err)
			}
			res, err := Render(context.Background(), Options{Root: root, Path: "app"})
			refused(t, res, err, "app/x.yaml", "the file is 100 MiB, more than the 16 MiB limit for one file")
		}
	})
	t.Run("MaxTotalBytes", func(t *testing.T) {
		body := configMap("c") + "  pad: " + strings.Repeat("x", 900) + "\n"
		for _, kustomized := range []bool{true, false} {
			root := t.TempDir()
			var names []string
			for i := range 4 {
				name := fmt.Sprintf("c%d.yaml", i)
				names = append(names, name)
				write(t, root, "app/"+name, strings.Replace(body, "name: c", "name: c"+fmt.Sprint(i), 1))
			}
			if kustomized {
				write(t, root, "app/kustomization.yaml", "resources: ["+strings.Join(names, ", ")+"]\n")
			}
			res, err := Render(context.Background(), Options{Root: root, Path: "app", MaxTotalBytes: 3000})
			refused(t, res, err, "app/c3.yaml", "the files read for this render add up to more than the 2.9 KiB limit")
		}
	})
	t.Run("not a regular file", func(t *testing.T) {
		for _, kustomized := range []bool{true, false} {
			root := t.TempDir()
			if kustomized {
				write(t, root, "app/kustomization.yaml", "resources: [x.yaml]\n")
			}
			write(t, root, "app/ok.yaml", configMap("ok"))
			// A FIFO would block a read forever.
			if err := syscall.Mkfifo(filepath.Join(root, "app/x.yaml"), 0o644); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
			res, err := Render(context.Background(), Options{Root: root, Path: "app"})
			refused(t, res, err, "app/x.yaml", "not a regular file")
		}
	})
}

func TestRenderObjectLimits(t *testing.T) {
	objects := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c%d\n", i)
		}
		return b.String()
	}
	t.Run("MaxObjects", func(t *testing.T) {
		renderBoth(t, objects(11), Options{MaxObjects: 10}, func(t *testing.T, res *Result, err error) {
			refused(t, res, err, "app/x.yaml", "more than 10 objects, the limit for one render")
		})
	})
	t.Run("MaxObjects reached", func(t *testing.T) {
		renderBoth(t, objects(10), Options{MaxObjects: 10}, func(t *testing.T, res *Result, err error) {
			if err != nil || len(res.Objects) != 10 {
				t.Errorf("10 objects at a limit of 10: %v", err)
			}
		})
	})
	t.Run("100,000 objects at the default limit", func(t *testing.T) {
		renderBoth(t, objects(100000), Options{}, func(t *testing.T, res *Result, err error) {
			refused(t, res, err, "app/x.yaml", "more than 20000 objects, the limit for one render")
		})
	})
	t.Run("counted each time kustomize reads them", func(t *testing.T) {
		// Two overlays of one base hold its objects twice; so would ten
		// levels of them 1024 times, from a handful of files.
		root := t.TempDir()
		write(t, root, "base/kustomization.yaml", "resources: [x.yaml]\n")
		write(t, root, "base/x.yaml", objects(6))
		write(t, root, "a/kustomization.yaml", "namePrefix: a-\nresources: [../base]\n")
		write(t, root, "b/kustomization.yaml", "namePrefix: b-\nresources: [../base]\n")
		write(t, root, "app/kustomization.yaml", "resources: [../a, ../b]\n")
		res, err := Render(context.Background(), Options{Root: root, Path: "app", MaxObjects: 10})
		refused(t, res, err, "base/x.yaml", "more than 10 objects")
	})
	t.Run("generated objects", func(t *testing.T) {
		root := t.TempDir()
		write(t, root, "app/kustomization.yaml", "configMapGenerator:\n- name: a\n  literals: [k=v]\n- name: b\n  literals: [k=v]\n- name: c\n  literals: [k=v]\n")
		res, err := Render(context.Background(), Options{Root: root, Path: "app", MaxObjects: 2})
		refused(t, res, err, "", "more than 2 objects")
	})
}
