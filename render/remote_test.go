package render

import (
	"context"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
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
		{"component", "component/kustomization.yaml", []string{`components: remote git reference "ssh://git@git.example.com/platform/components.git//monitoring"`}},
		// The overlay is local; its base is not.
		{"nested/overlay", "nested/base/kustomization.yaml", []string{`remote reference "https://raw.example.com/crds.yaml"`}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := Render(context.Background(), Options{Root: root, Path: tt.path})
			userError(t, err, tt.wantPath, tt.want...)
		})
	}
	t.Run("file scheme is refused even when remote bases are allowed", func(t *testing.T) {
		_, err := Render(context.Background(), Options{Root: root, Path: "file-scheme", AllowRemoteBases: true})
		userError(t, err, "file-scheme/kustomization.yaml", "never allowed")
	})
}

// TestRenderRemoteNoNetwork proves, with a server on loopback, that a refused
// remote reference makes no request at all, and that an allowed one is
// fetched by kustomize (and fails clearly when the server has nothing).
func TestRenderRemoteNoNetwork(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.NotFound(w, r)
	}))
	defer srv.Close()

	root := t.TempDir()
	write(t, root, "file/kustomization.yaml", "resources:\n- "+srv.URL+"/manifest.yaml\n")
	write(t, root, "git/kustomization.yaml", "resources:\n- "+srv.URL+"/org/repo.git//base?ref=v1\n")
	write(t, root, "patch/kustomization.yaml", "resources: [cm.yaml]\npatches:\n- path: "+srv.URL+"/patch.yaml\n")
	write(t, root, "patch/cm.yaml", configMap("cm"))
	write(t, root, "overlay/kustomization.yaml", "resources: [../git]\n")

	for _, path := range []string{"file", "git", "patch", "overlay"} {
		t.Run("refused/"+path, func(t *testing.T) {
			_, err := Render(context.Background(), Options{Root: root, Path: path})
			if err == nil || !strings.Contains(err.Error(), srv.URL) {
				t.Fatalf("err = %v, want it to name %s", err, srv.URL)
			}
			if n := hits.Load(); n != 0 {
				t.Fatalf("%d requests reached the server", n)
			}
		})
	}
	for _, path := range []string{"file", "patch"} {
		t.Run("allowed/"+path, func(t *testing.T) {
			before := hits.Load()
			_, err := Render(context.Background(), Options{Root: root, Path: path, AllowRemoteBases: true})
			userError(t, err, path, srv.URL)
			if hits.Load() == before {
				t.Errorf("kustomize made no request; error: %v", err)
			}
		})
	}
}

// TestRenderRemoteBaseAllowed clones a real remote base from a git
// repository served on loopback (git http-backend as CGI), which shows that
// kustomize's clone directory is readable through rootFS when, and only
// when, remote bases are allowed, and that the checkout stays untouched.
func TestRenderRemoteBaseAllowed(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed")
	}
	srcDir := t.TempDir()
	write(t, srcDir, "base/kustomization.yaml", "resources: [cm.yaml]\n")
	write(t, srcDir, "base/cm.yaml", configMap("from-remote"))
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
	srv := httptest.NewServer(&cgi.Handler{
		Path:   gitBin,
		Args:   []string{"http-backend"},
		Env:    []string{"GIT_PROJECT_ROOT=" + served, "GIT_HTTP_EXPORT_ALL=1"},
		Stderr: io.Discard, // kustomize first GETs the URL as a file
	})
	defer srv.Close()

	root := t.TempDir()
	write(t, root, "overlay/kustomization.yaml", "namespace: team\nresources:\n- "+srv.URL+"/repo.git//base?ref=main\n")
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
	_, err = Render(context.Background(), Options{Root: root, Path: "overlay"})
	userError(t, err, "overlay/kustomization.yaml", "not allowed")
}
