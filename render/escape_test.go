package render

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRenderPathErrors(t *testing.T) {
	root := testdata(t, "app")
	tests := []struct {
		path string
		want string
	}{
		{"../x", "path ../x escapes the repository root"},
		{"../../../../etc", "path ../../../../etc escapes the repository root"},
		{"base/../../plain", "path base/../../plain escapes the repository root"},
		{"/etc", "path /etc is absolute; it must be relative to the repository root"},
		{root + "/base", "is absolute"},
		{"nope", "path nope does not exist in the repository"},
		{"base/deployment.yaml", "path base/deployment.yaml is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := Render(context.Background(), Options{Root: root, Path: tt.path})
			userError(t, err, "", tt.want)
		})
	}
}

func TestRenderRootNotAbsolute(t *testing.T) {
	_, err := Render(context.Background(), Options{Root: "testdata/app", Path: "base"})
	if err == nil {
		t.Fatal("relative root accepted")
	}
	var rerr *Error
	if errors.As(err, &rerr) {
		t.Errorf("a bad Root is the caller's bug, not a user error: %v", err)
	}
}

// TestRenderEscapes covers references that leave the root: kustomization
// fields pointing above it, and symlinks inside it pointing out of it.
func TestRenderEscapes(t *testing.T) {
	t.Run("fixtures", func(t *testing.T) {
		root := testdata(t, "escape/repo")
		tests := []struct {
			path, wantPath string
			want           []string
		}{
			{"via-resource", "via-resource/kustomization.yaml", []string{`resources: "../../outside.yaml"`, "outside the repository root"}},
			{"via-base", "via-base/kustomization.yaml", []string{`resources: "../../outside-base"`, "outside the repository root"}},
			{"via-patch", "via-patch/kustomization.yaml", []string{`patches: "../../outside.yaml"`, "outside the repository root"}},
			{"via-generator", "via-generator/kustomization.yaml", []string{`configMapGenerator: "../../outside.yaml"`, "outside the repository root"}},
		}
		for _, tt := range tests {
			t.Run(tt.path, func(t *testing.T) {
				_, err := Render(context.Background(), Options{Root: root, Path: tt.path})
				userError(t, err, tt.wantPath, tt.want...)
			})
		}
	})

	// Symlinks are made at test time: their targets are absolute.
	outside := t.TempDir()
	write(t, outside, "secret.yaml", configMap("stolen"))
	write(t, outside, "base/kustomization.yaml", "resources: [../secret.yaml]\n")
	root := t.TempDir()
	write(t, root, "file-link/kustomization.yaml", "resources: [secret.yaml]\n")
	symlink(t, filepath.Join(outside, "secret.yaml"), filepath.Join(root, "file-link/secret.yaml"))
	write(t, root, "dir-link/kustomization.yaml", "resources: [../linked-base]\n")
	symlink(t, filepath.Join(outside, "base"), filepath.Join(root, "linked-base"))
	symlink(t, filepath.Join(outside, "secret.yaml"), filepath.Join(root, "plain-link/secret.yaml"))
	write(t, root, "plain-link/ok.yaml", configMap("ok"))
	symlink(t, outside, filepath.Join(root, "path-link"))
	// A symlink that stays inside the root is fine.
	write(t, root, "inside/kustomization.yaml", "resources: [cm.yaml]\n")
	symlink(t, filepath.Join(root, "plain-link/ok.yaml"), filepath.Join(root, "inside/cm.yaml"))

	tests := []struct {
		name, path, wantPath string
		want                 []string
	}{
		{"resource file is a symlink", "file-link", "file-link/kustomization.yaml",
			[]string{`resources: "secret.yaml"`, "file-link/secret.yaml is a symlink that leads outside the repository root"}},
		{"base folder is a symlink", "dir-link", "dir-link/kustomization.yaml",
			[]string{`resources: "../linked-base"`, "linked-base is a symlink that leads outside the repository root"}},
		{"plain folder file is a symlink", "plain-link", "plain-link/secret.yaml",
			[]string{"plain-link/secret.yaml is a symlink that leads outside the repository root"}},
		{"path is a symlink", "path-link", "",
			[]string{"path path-link escapes the repository root (through a symlink)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Render(context.Background(), Options{Root: root, Path: tt.path})
			userError(t, err, tt.wantPath, tt.want...)
			// Where the link leads is a path on the agent's machine.
			if strings.Contains(err.Error(), outside) {
				t.Errorf("error names the symlink's target: %v", err)
			}
			if res != nil {
				t.Errorf("objects returned with an error: %v", ids(res.Objects))
			}
		})
	}
	t.Run("symlink inside the root", func(t *testing.T) {
		res, err := Render(context.Background(), Options{Root: root, Path: "inside"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Objects) != 1 || res.Objects[0].GetName() != "ok" {
			t.Errorf("objects = %v", ids(res.Objects))
		}
	})
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symlinks unsupported: %v", err)
	}
}

func TestRootFSConfinesAndRefusesWrites(t *testing.T) {
	outside := t.TempDir()
	write(t, outside, "x.yaml", "x")
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	write(t, root, "a/in.yaml", "in")
	fsys := newRootFS(root, (&Options{}).limits(), false)
	if err := fsys.addVirtual(filepath.Join(root, "a/kustomization.yaml"), []byte("resources: [in.yaml]\n")); err != nil {
		t.Fatal(err)
	}

	if b, err := fsys.ReadFile(filepath.Join(root, "a/in.yaml")); err != nil || string(b) != "in" {
		t.Errorf("ReadFile inside = %q, %v", b, err)
	}
	if b, err := fsys.ReadFile(filepath.Join(root, "a/kustomization.yaml")); err != nil || len(b) == 0 {
		t.Errorf("ReadFile virtual = %q, %v", b, err)
	}
	if !fsys.Exists(filepath.Join(root, "a/kustomization.yaml")) {
		t.Error("virtual file does not exist")
	}
	if names, err := fsys.ReadDir(filepath.Join(root, "a")); err != nil || len(names) != 2 {
		t.Errorf("ReadDir = %v, %v; want in.yaml and the virtual kustomization.yaml", names, err)
	}
	var esc *escapeError
	if _, err := fsys.ReadFile(filepath.Join(outside, "x.yaml")); !errors.As(err, &esc) {
		t.Errorf("ReadFile outside: err = %v, want escapeError", err)
	}
	if _, err := fsys.ReadFile(filepath.Join(root, "..", filepath.Base(outside), "x.yaml")); !errors.As(err, &esc) {
		t.Errorf("ReadFile ../: err = %v, want escapeError", err)
	}
	if fsys.Exists(filepath.Join(outside, "x.yaml")) || fsys.IsDir(outside) {
		t.Error("Exists/IsDir see outside the root")
	}
	if _, _, err := fsys.CleanedAbs(outside); !errors.As(err, &esc) {
		t.Errorf("CleanedAbs outside: err = %v", err)
	}
	for name, err := range map[string]error{
		"WriteFile": fsys.WriteFile(filepath.Join(root, "a/new.yaml"), []byte("x")),
		"MkdirAll":  fsys.MkdirAll(filepath.Join(root, "b")),
		"Mkdir":     fsys.Mkdir(filepath.Join(root, "c")),
		"RemoveAll": fsys.RemoveAll(filepath.Join(root, "a")),
	} {
		if !errors.Is(err, errReadOnly) {
			t.Errorf("%s: err = %v, want errReadOnly", name, err)
		}
	}
	if _, err := fsys.Create(filepath.Join(root, "d")); !errors.Is(err, errReadOnly) {
		t.Errorf("Create: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "a/kustomization.yaml")); !os.IsNotExist(err) {
		t.Errorf("virtual file reached the disk: %v", err)
	}
}

func TestRenderAbsoluteReference(t *testing.T) {
	root := t.TempDir()
	inside := filepath.Join(root, "app/cm.yaml")
	write(t, root, "app/cm.yaml", configMap("cm"))
	write(t, root, "app/kustomization.yaml", "resources:\n- "+inside+"\n")
	_, err := Render(context.Background(), Options{Root: root, Path: "app"})
	userError(t, err, "app/kustomization.yaml", "absolute paths are not allowed", inside)
}

// TestRootFSCloneDirs: a build that may clone reads only the clone
// directories made after it began, so one render cannot read another's
// clone (or one left behind), by a symlink or by a path that leads there.
func TestRootFSCloneDirs(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tempClone := func() string {
		t.Helper()
		dir, err := os.MkdirTemp("", "kustomize-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		dir, err = filepath.EvalSymlinks(dir)
		if err != nil {
			t.Fatal(err)
		}
		write(t, dir, "base/cm.yaml", configMap("cm"))
		return dir
	}
	other := tempClone() // another render's clone, there before this build began
	fsys := newRootFS(root, (&Options{}).limits(), true)
	if err := fsys.startClones(); err != nil {
		t.Fatal(err)
	}
	own := tempClone() // this build's clone
	symlink(t, filepath.Join(own, "base/cm.yaml"), filepath.Join(root, "link.yaml"))
	symlink(t, filepath.Join(other, "base/cm.yaml"), filepath.Join(own, "base/other.yaml"))

	if _, err := fsys.ReadFile(filepath.Join(own, "base/cm.yaml")); err != nil {
		t.Errorf("own clone unreadable: %v", err)
	}
	var esc *escapeError
	for name, p := range map[string]string{
		"another render's clone":             filepath.Join(other, "base/cm.yaml"),
		"the other clone through ../":        filepath.Join(own, "..", filepath.Base(other), "base/cm.yaml"),
		"a symlink from a clone to another":  filepath.Join(own, "base/other.yaml"),
		"a symlink from the checkout to one": filepath.Join(root, "link.yaml"),
	} {
		if _, err := fsys.ReadFile(p); !errors.As(err, &esc) {
			t.Errorf("%s: err = %v, want escapeError", name, err)
		}
	}
	if err := fsys.RemoveAll(other); !errors.Is(err, errReadOnly) {
		t.Errorf("RemoveAll(another render's clone) = %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another render's clone was removed: %v", err)
	}
	if err := fsys.RemoveAll(own); err != nil {
		t.Errorf("RemoveAll(own clone) = %v", err)
	}

	fresh := tempClone()
	if _, err := newRootFS(root, (&Options{}).limits(), false).ReadFile(filepath.Join(fresh, "base/cm.yaml")); !errors.As(err, &esc) {
		t.Errorf("clone readable by a build that may not clone: err = %v", err)
	}
}

// TestRenderEscapeFields tries every kustomization field that names a file
// or folder with a reference that leaves the root: by ../, by an absolute
// path, and by a symlink (to a file and to a folder). Each is refused with
// the field named, without objects, and without the outside content.
func TestRenderEscapeFields(t *testing.T) {
	parent := t.TempDir()
	outside := filepath.Join(parent, "outside")
	secret := "apiVersion: v1\nkind: Secret\nmetadata:\n  name: stolen\nstringData:\n  token: s3cr3t-value\n"
	write(t, outside, "secret.yaml", secret)
	write(t, outside, "env", "TOKEN=s3cr3t-value\n")
	write(t, outside, "base/kustomization.yaml", "resources: [../secret.yaml]\n")
	write(t, outside, "comp/kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources: [../secret.yaml]\n")
	write(t, outside, "gen.yaml", "apiVersion: builtin\nkind: SecretGenerator\nmetadata:\n  name: g\nenvs: [env]\n")
	root := filepath.Join(parent, "repo")
	write(t, root, "app/cm.yaml", configMap("cm"))
	symlink(t, filepath.Join(outside, "secret.yaml"), filepath.Join(root, "app/file-link.yaml"))
	symlink(t, filepath.Join(outside, "comp"), filepath.Join(root, "app/dir-link"))
	symlink(t, filepath.Join(outside, "env"), filepath.Join(root, "app/env-link"))

	up := "../../outside/"
	tests := []struct {
		name, field, kust string
	}{
		{"components ../", "components", "components: [" + up + "comp]\n"},
		{"generators ../", "generators", "generators: [" + up + "gen.yaml]\n"},
		{"transformers ../", "transformers", "transformers: [" + up + "gen.yaml]\n"},
		{"validators ../", "validators", "validators: [" + up + "gen.yaml]\n"},
		{"patchesStrategicMerge ../", "patchesStrategicMerge", "patchesStrategicMerge: [" + up + "secret.yaml]\n"},
		{"patchesJson6902 ../", "patchesJson6902", "patchesJson6902:\n- target: {kind: ConfigMap, name: cm}\n  path: " + up + "secret.yaml\n"},
		{"crds ../", "crds", "crds: [" + up + "secret.yaml]\n"},
		{"configurations ../", "configurations", "configurations: [" + up + "secret.yaml]\n"},
		{"openapi ../", "openapi", "openapi:\n  path: " + up + "secret.yaml\n"},
		{"replacements ../", "replacements", "replacements:\n- path: " + up + "secret.yaml\n"},
		{"secretGenerator files ../", "secretGenerator", "secretGenerator:\n- name: s\n  files: [k=" + up + "secret.yaml]\n"},
		{"configMapGenerator envs ../", "configMapGenerator", "configMapGenerator:\n- name: c\n  envs: [" + up + "env]\n"},
		{"patches absolute", "patches", "patches:\n- path: " + filepath.Join(outside, "secret.yaml") + "\n"},
		{"components absolute", "components", "components: [" + filepath.Join(outside, "comp") + "]\n"},
		{"generators absolute", "generators", "generators: [" + filepath.Join(outside, "gen.yaml") + "]\n"},
		{"configMapGenerator files absolute", "configMapGenerator", "configMapGenerator:\n- name: c\n  files: [" + filepath.Join(outside, "secret.yaml") + "]\n"},
		{"patches file symlink", "patches", "patches:\n- path: file-link.yaml\n"},
		{"generators file symlink", "generators", "generators: [file-link.yaml]\n"},
		{"configMapGenerator file symlink", "configMapGenerator", "configMapGenerator:\n- name: c\n  envs: [env-link]\n"},
		{"openapi file symlink", "openapi", "openapi:\n  path: file-link.yaml\n"},
		{"components folder symlink", "components", "components: [dir-link]\n"},
		{"resources folder symlink", "resources", "resources: [dir-link]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			write(t, root, "app/kustomization.yaml", "resources: [cm.yaml]\n"+strings.Replace(tt.kust, "resources: [dir-link]\n", "", 1))
			if tt.field == "resources" {
				write(t, root, "app/kustomization.yaml", "resources: [cm.yaml, dir-link]\n")
			}
			res, err := Render(context.Background(), Options{Root: root, Path: "app"})
			if res != nil {
				t.Errorf("objects returned: %v", ids(res.Objects))
			}
			userError(t, err, "app/kustomization.yaml", tt.field+":")
			msg := err.Error()
			if !strings.Contains(msg, "outside the repository root") && !strings.Contains(msg, "absolute paths are not allowed") {
				t.Errorf("error does not say why: %v", err)
			}
			if strings.Contains(msg, "s3cr3t") {
				t.Errorf("error shows outside content: %v", err)
			}
			if !strings.Contains(tt.name, "absolute") && strings.Contains(msg, parent) {
				t.Errorf("error names a path outside the repository: %v", err)
			}
		})
	}
}
