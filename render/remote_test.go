package render

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRenderRemoteRefused(t *testing.T) {
	root := testdata(t, "remote")
	tests := []struct {
		path, wantPath string
		want           []string
	}{
		{"git-base", "git-base/kustomization.yaml", []string{`resources: remote git reference "github.com/example/platform//deploy/base?ref=v1.2.3" is not allowed`, "allowRemoteBases"}},
		{"https-base", "https-base/kustomization.yaml", []string{`remote reference "https://git.example.com/platform.git//base?ref=main"`}},
		{"scp-base", "scp-base/kustomization.yaml", []string{`remote git reference "git@git.example.com:platform/base.git"`}},
		{"http-file", "http-file/kustomization.yaml", []string{`remote reference "http://127.0.0.1:1/manifest.yaml"`}},
		{"component", "component/kustomization.yaml", []string{`components: remote git reference "ssh://git.example.com/platform/components.git//monitoring"`}},
		// The overlay is local; its base is not.
		{"nested/overlay", "nested/base/kustomization.yaml", []string{`remote reference "https://raw.example.com/crds.yaml"`}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := Render(context.Background(), Options{Root: root, Path: tt.path})
			userError(t, err, tt.wantPath, tt.want...)
		})
	}
	// With remote bases allowed, only https git URLs without submodules
	// are: every other form is refused before kustomize runs git.
	allowed := []struct {
		path, wantPath string
		want           []string
	}{
		{"file-scheme", "file-scheme/kustomization.yaml", []string{"never allowed"}},
		{"git-base", "git-base/kustomization.yaml", []string{"must be https:// git URLs"}},
		{"scp-base", "scp-base/kustomization.yaml", []string{"must be https:// git URLs"}},
		{"component", "component/kustomization.yaml", []string{"components:", "must be https:// git URLs"}},
		{"https-base", "https-base/kustomization.yaml", []string{"git submodules", "add submodules=false"}},
	}
	for _, tt := range allowed {
		t.Run("remote bases allowed/"+tt.path, func(t *testing.T) {
			res, err := Render(context.Background(), Options{Root: root, Path: tt.path, AllowRemoteBases: true})
			userError(t, err, tt.wantPath, tt.want...)
			if res != nil {
				t.Errorf("objects returned: %v", ids(res.Objects))
			}
		})
	}
	t.Run("remote bases allowed/forms", func(t *testing.T) {
		root := t.TempDir()
		for name, ref := range map[string]string{
			"http":          "http://git.example.com/org/repo.git//base?ref=v1&submodules=false",
			"git-http":      "git::http://git.example.com/org/repo.git//base?submodules=false",
			"ssh":           "ssh://git.example.com/org/repo.git//base?submodules=false",
			"submodules-on": "https://git.example.com/org/repo.git//base?submodules=true",
			"bad-query":     "https://git.example.com/org/repo.git//base?submodules=false&x=%zz",
			"file-upper":    "FILE:///etc//base?submodules=false",
		} {
			write(t, root, name+"/kustomization.yaml", "resources:\n- "+ref+"\n")
			t.Run(name, func(t *testing.T) {
				_, err := Render(context.Background(), Options{Root: root, Path: name, AllowRemoteBases: true})
				userError(t, err, name+"/kustomization.yaml", "allowed")
			})
		}
	})
	t.Run("user information is not shown", func(t *testing.T) {
		root := t.TempDir()
		write(t, root, "app/kustomization.yaml", "resources:\n- https://user:t0ken@git.example.com/org/repo.git//base\n")
		_, err := Render(context.Background(), Options{Root: root, Path: "app"})
		userError(t, err, "app/kustomization.yaml", `"https://git.example.com/org/repo.git//base"`)
		if strings.Contains(err.Error(), "t0ken") {
			t.Errorf("error shows the token: %v", err)
		}
	})
}

// TestRenderRemoteBaseAllowed clones a real remote base over https from a
// git repository served on loopback (git http-backend as CGI). It shows
// that kustomize's clone is readable through rootFS when, and only when,
// remote bases are allowed; that the checkout stays untouched; that
// kustomize's plain GET of the base URL never reaches the server; and that
// a remote base cannot read another render's clone, by a relative path or
// a symlink.
func TestRenderRemoteBaseAllowed(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed")
	}
	other, err := os.MkdirTemp("", "kustomize-") // another render's clone
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(other)
	write(t, other, "secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: stolen\nstringData:\n  token: s3cr3t-value\n")

	srcDir := t.TempDir()
	write(t, srcDir, "base/kustomization.yaml", "resources: [cm.yaml]\n")
	write(t, srcDir, "base/cm.yaml", configMap("from-remote"))
	write(t, srcDir, "escape-rel/kustomization.yaml", "resources:\n- ../../"+filepath.Base(other)+"/secret.yaml\n")
	write(t, srcDir, "escape-link/kustomization.yaml", "resources: [secret.yaml]\n")
	symlink(t, filepath.Join(other, "secret.yaml"), filepath.Join(srcDir, "escape-link/secret.yaml"))
	served := t.TempDir()
	bare := filepath.Join(served, "repo.git")
	for _, args := range [][]string{
		{"-C", srcDir, "init", "-q", "-b", "main"},
		{"-C", srcDir, "add", "."},
		{"-C", srcDir, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "base"},
		{"clone", "-q", "--bare", srcDir, bare},
	} {
		if out, err := exec.Command(gitBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	backend := &cgi.Handler{
		Path:   gitBin,
		Args:   []string{"http-backend"},
		Env:    []string{"GIT_PROJECT_ROOT=" + served, "GIT_HTTP_EXPORT_ALL=1"},
		Stderr: io.Discard,
	}
	var plainGETs atomic.Int64
	var mu sync.Mutex
	clones := map[string]os.FileMode{} // kustomize's clone dirs, seen while git fetches
	existing := tempClones(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/info/refs") && !strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
			plainGETs.Add(1) // not git's protocol: kustomize reading the URL as a file
		}
		mu.Lock()
		for name, mode := range tempClones(t) {
			// Ours, not some other process's: its origin is this server.
			config, _ := os.ReadFile(filepath.Join(os.TempDir(), name, ".git/config"))
			if _, ok := existing[name]; !ok && strings.Contains(string(config), r.Host) {
				clones[name] = mode
			}
		}
		mu.Unlock()
		backend.ServeHTTP(w, r)
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GIT_SSL_CAINFO", caFile)

	remote := func(dir string) string { return srv.URL + "/repo.git//" + dir + "?ref=main&submodules=false" }
	root := t.TempDir()
	write(t, root, "overlay/kustomization.yaml", "namespace: team\nresources:\n- "+remote("base")+"\n")
	write(t, root, "rel/kustomization.yaml", "resources:\n- "+remote("escape-rel")+"\n")
	write(t, root, "link/kustomization.yaml", "resources:\n- "+remote("escape-link")+"\n")
	before := snapshot(t, root)
	res, err := Render(context.Background(), Options{Root: root, Path: "overlay", AllowRemoteBases: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(res.Objects); len(got) != 1 || got[0] != "ConfigMap team/from-remote" {
		t.Errorf("objects = %v", got)
	}
	if diff := cmp.Diff(before, snapshot(t, root)); diff != "" {
		t.Errorf("render changed the checkout (-before +after):\n%s", diff)
	}
	if n := plainGETs.Load(); n != 0 {
		t.Errorf("%d plain requests (not git) reached the server", n)
	}
	mu.Lock()
	if len(clones) == 0 {
		t.Error("saw no clone directory while git fetched")
	}
	for name, mode := range clones {
		if mode.Perm() != 0o700 {
			t.Errorf("clone directory %s has mode %v, want 0700", name, mode.Perm())
		}
		if _, err := os.Stat(filepath.Join(os.TempDir(), name)); !os.IsNotExist(err) {
			t.Errorf("clone directory %s left behind (%v)", name, err)
		}
	}
	mu.Unlock()
	_, err = Render(context.Background(), Options{Root: root, Path: "overlay"})
	userError(t, err, "overlay/kustomization.yaml", "not allowed")

	for _, path := range []string{"rel", "link"} {
		t.Run("another render's clone via "+path, func(t *testing.T) {
			res, err := Render(context.Background(), Options{Root: root, Path: path, AllowRemoteBases: true})
			var rerr *Error
			if !errors.As(err, &rerr) {
				t.Fatalf("want *render.Error, got %T: %v", err, err)
			}
			if res != nil {
				t.Errorf("objects returned: %v", ids(res.Objects))
			}
			if !strings.Contains(err.Error(), "outside") || strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error = %v", err)
			}
		})
	}
}

// tempClones returns the kustomize clone directories in os.TempDir() and
// their modes.
func tempClones(t *testing.T) map[string]os.FileMode {
	entries, err := os.ReadDir(os.TempDir())
	if err != nil {
		t.Error(err)
		return nil
	}
	out := map[string]os.FileMode{}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && e.IsDir() && strings.HasPrefix(e.Name(), "kustomize-") {
			out[e.Name()] = info.Mode()
		}
	}
	return out
}
