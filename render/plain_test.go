package render

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// renderTwice renders opts directly (plain folders without kustomize) and
// with kustomize, and fails unless both give the same objects, hash and
// error.
func renderTwice(t *testing.T, opts Options) {
	t.Helper()
	direct, derr := render(context.Background(), opts, true)
	kust, kerr := render(context.Background(), opts, false)
	if (derr == nil) != (kerr == nil) || derr != nil && derr.Error() != kerr.Error() {
		t.Fatalf("direct render: %v\nkustomize render: %v", derr, kerr)
	}
	if derr != nil {
		return
	}
	if diff := cmp.Diff(kust.Objects, direct.Objects); diff != "" {
		t.Fatalf("direct render differs from kustomize's (-kustomize +direct):\n%s", diff)
	}
	if direct.Hash != kust.Hash {
		t.Fatalf("hash %s, kustomize's %s", direct.Hash, kust.Hash)
	}
}

// takesDirectPath reports whether Render builds the folder without
// kustomize.
func takesDirectPath(t *testing.T, root, path string) bool {
	t.Helper()
	realRoot, dir, err := resolvePath(root, path)
	if err != nil {
		t.Fatal(err)
	}
	fsys := newRootFS(realRoot, (&Options{}).limits(), false)
	if kustomizationFile(fsys, dir) != "" {
		return false
	}
	folder, err := scanPlain(fsys, dir)
	if err != nil {
		return false
	}
	return folder.direct && distinctIDs(folder.objects)
}

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
  annotations:
    note: "yes"
  creationTimestamp: null
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: "nginx:1.27"
        args: ["--port", "8080", '']
        env:
        - {name: A, value: "1"}
        - {name: B, value: 'on'}
        resources:
          limits: {cpu: 500m, memory: 128Mi}
`

// TestPlainMatchesKustomize holds the direct render of plain folders to
// kustomize's: every case renders both ways, with and without
// substitution. Cases marked direct must take the direct path (so a check
// that sends everything to kustomize fails here); the others are what it
// leaves to kustomize, and must still come out the same.
func TestPlainMatchesKustomize(t *testing.T) {
	cm := func(name, rest string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n" + rest
	}
	tests := []struct {
		name   string
		files  map[string]string
		direct bool
	}{
		{"deployment", map[string]string{"a.yaml": deployment}, true},
		{"several files and documents in lexical order", map[string]string{
			"b.yaml": cm("b1", "") + "---\n" + cm("b2", ""), "a/z.yml": cm("az", ""), "c.yaml": "---\n# nothing\n---\n" + cm("c", ""),
		}, true},
		{"scalars", map[string]string{"a.yaml": cm("s", `data: {}
spec:
  ints: [1, -2, 0x1F, 0o17, 017, +5, 9223372036854775807]
  floats: [1.0, 1.5, 1e3, 1e21, 1e20, -0.0, 2.5e-7, 100000000000000000000.0]
  bools: [true, false, yes, no, on, off, True]
  nulls: {a: ~, b: null}
  strings: ["123", '1.0', "", "2001-12-14", "a\tb", "\u00e9\U0001F600", 'it''s']
  blocks:
    lit: "|\n  x\n"
    keep: |+
      kept

    fold: >-
      folded
      text
`)}, true},
		{"block scalars", map[string]string{"a.yaml": cm("b", "data:\n  script: |\n    #!/bin/sh\n    echo ${HOME}   \n    exit 0\n  folded: >\n    one\n    two\n\n    three\n  trailing: \"x \"\n")}, true},
		{"same name in other namespaces and kinds", map[string]string{"a.yaml": strings.Join([]string{
			cm("x", "") + "  namespace: a\n", cm("x", "") + "  namespace: b\n", cm("x", ""),
			"apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n",
		}, "---\n")}, true},
		{"crlf", map[string]string{"a.yaml": strings.ReplaceAll(deployment, "\n", "\r\n")}, true},
		{"substitution", map[string]string{"a.yaml": cm("v", "data:\n  a: ${X}\n  b: ${Y:=def}\n  c: $${X}\n  n: \"${N:=3}\"\n")}, true},
		{"substitution disabled", map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: v\n  annotations:\n    tether.dev/substitute: disabled\ndata:\n  a: ${X}\n"}, true},

		{"duplicate id", map[string]string{"a.yaml": cm("x", "") + "---\n" + cm("x", "")}, false},
		{"default namespace is no namespace", map[string]string{"a.yaml": cm("x", "") + "---\n" + cm("x", "  namespace: default\n")}, false},
		{"cluster-scoped kinds have no namespace", map[string]string{"a.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  namespace: a\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  namespace: b\n"}, false},
		{"duplicate across files", map[string]string{"a.yaml": cm("x", ""), "b.yaml": cm("x", "")}, false},
		{"list", map[string]string{"a.yaml": "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n"}, false},
		{"empty list", map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMapList\nitems: null\n---\n" + cm("x", "")}, false},
		{"list kind without items", map[string]string{"a.yaml": "apiVersion: example.com/v1\nkind: ThingList\nmetadata:\n  name: t\n"}, false},
		{"anchors and aliases", map[string]string{"a.yaml": cm("a", "data: &d\n  k: v\nextra: *d\n")}, false},
		{"merge key", map[string]string{"a.yaml": "base: &b {apiVersion: v1, kind: ConfigMap}\n<<: *b\nmetadata: {name: m}\n"}, false},
		{"inline merge key", map[string]string{"a.yaml": cm("m", "data:\n  <<: {a: b}\n  c: d\n")}, false},
		{"explicit tags", map[string]string{"a.yaml": cm("t", "data:\n  a: !!str 1\n  b: !!binary aGVsbG8=\n")}, false},
		{"null list item", map[string]string{"a.yaml": cm("n", "spec:\n  args: [a, null]\n")}, false},
		{"non-string keys", map[string]string{"a.yaml": cm("k", "data:\n  1: a\n  true: b\n")}, false},
		{"empty annotations and labels", map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\n  annotations: {}\n  labels: {}\n"}, false},
		{"null annotations", map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\n  annotations: null\n"}, false},
		{"local config", map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: l\n  annotations:\n    config.kubernetes.io/local-config: \"true\"\n---\n" + cm("kept", "")}, false},
		{"kyaml annotations", map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: i\n  annotations:\n    config.kubernetes.io/index: \"7\"\n    internal.config.kubernetes.io/path: x.yaml\n    kustomize.config.k8s.io/id: x\n"}, false},
		{"non-string label", map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: i\n  labels: {a: 1}\n"}, false},
		{"numeric name", map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: 123\n"}, false},
		{"null namespace", map[string]string{"a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: n\n  namespace: null\n"}, false},
		{"empty values", map[string]string{"a.yaml": cm("e", "spec:\n  a:\n  b: {c: }\n")}, false},
		{"timestamps", map[string]string{"a.yaml": cm("t", "spec:\n  a: 2001-12-14\n  b: 2001-12-14t21:59:43.10-05:00\n")}, false},
		{"key that looks like a separator", map[string]string{"a.yaml": cm("k", "spec:\n  a: 0\n---: 0\n")}, false},
		{"separator with text", map[string]string{"a.yaml": cm("a", "") + "--- x\n" + cm("b", "")}, false},
		{"separator without a space", map[string]string{"a.yaml": cm("a", "") + "---#c\n" + cm("b", "")}, false},
		{"separator with a comment", map[string]string{"a.yaml": cm("a", "") + "--- # next\n" + cm("b", "")}, true},
		{"document end marker", map[string]string{"a.yaml": cm("a", "") + "...\n" + cm("b", "")}, false},
		{"directive", map[string]string{"a.yaml": "%YAML 1.2\n---\n" + cm("a", "")}, false},
		{"carriage returns alone", map[string]string{"a.yaml": strings.ReplaceAll(cm("a", "")+"---\n"+cm("b", ""), "\n", "\r")}, false},
		{"infinity", map[string]string{"a.yaml": cm("f", "spec:\n  x: .inf\n")}, false},
		{"beyond int64", map[string]string{"a.yaml": cm("f", "spec:\n  x: 18446744073709551616\n  y: 9223372036854775808\n")}, false},
		{"kustomization as a resource", map[string]string{"a.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nmetadata:\n  name: k\nresources: [b.yaml]\n"}, false},
		{"kustomization below", map[string]string{"a.yaml": cm("a", ""), "sub/kustomization.yaml": "resources: [b.yaml]\n", "sub/b.yaml": cm("b", "")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tt.files {
				write(t, root, filepath.Join("app", name), content)
			}
			if got := takesDirectPath(t, root, "app"); got != tt.direct {
				t.Errorf("direct path = %v, want %v", got, tt.direct)
			}
			renderTwice(t, Options{Root: root, Path: "app"})
			renderTwice(t, Options{Root: root, Path: "app", Substitute: map[string]string{"X": "x", "N": "7"}})
		})
	}
}

// TestPlainMatchesKustomizeFixtures renders every folder of testdata that
// has no kustomization both ways.
func TestPlainMatchesKustomizeFixtures(t *testing.T) {
	root := testdata(t, ".")
	n := 0
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() || p == root || strings.Contains(p, "fuzz") {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		t.Run(rel, func(t *testing.T) {
			renderTwice(t, Options{Root: root, Path: rel})
			renderTwice(t, Options{Root: root, Path: rel, Substitute: map[string]string{"X": "x"}})
		})
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no fixtures")
	}
}

// FuzzPlainMatchesKustomize: a plain folder holding data renders the same
// directly and with kustomize (objects, hash and error).
func FuzzPlainMatchesKustomize(f *testing.F) {
	f.Add([]byte(deployment))
	f.Add([]byte(configMap("a") + "---\n" + configMap("b")))
	f.Add([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\ndata:\n  a: 1.0\n  b: 0x10\n  c: 2001-12-14\n  d: ${X:=y}\n"))
	f.Add([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\n  annotations: {}\n"))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4<<10 {
			return // kustomize is slow on large input; size is not what differs
		}
		// Not t.TempDir: kustomize's in-memory file system, which holds the
		// generated kustomization, refuses a '#' in a directory name.
		root, err := os.MkdirTemp("", "plain")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(root)
		write(t, root, "app/a.yaml", string(data))
		renderTwice(t, Options{Root: root, Path: "app", Substitute: map[string]string{"X": "x"}})
	})
}
