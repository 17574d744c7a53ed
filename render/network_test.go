package render

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// countingServer is an HTTP server on 127.0.0.1 that counts its requests
// and answers each with a ConfigMap, so that a fetch that got through would
// also make the render succeed.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte(configMap("fetched")))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// TestRenderNeverFetchesURLs tries every kustomization field and built-in
// plugin config that loads a path with an http URL, with remote bases off
// and on: each must fail with a clear error naming the URL, return no
// objects, and send the loopback server nothing at all.
func TestRenderNeverFetchesURLs(t *testing.T) {
	srv, hits := countingServer(t)
	u := srv.URL + "/x.yaml"
	git := srv.URL + "/org/repo.git//base?ref=v1&submodules=false"
	cm := configMap("cm")
	patchTransformer := "apiVersion: builtin\nkind: PatchTransformer\nmetadata:\n  name: p\npath: " + u + "\n"
	tests := []struct {
		name  string
		files map[string]string // kustomization.yaml and whatever else
		want  string            // in the error; srv.URL when empty
	}{
		{"resources", map[string]string{"kustomization.yaml": "resources:\n- " + u + "\n"}, ""},
		{"resources git", map[string]string{"kustomization.yaml": "resources:\n- " + git + "\n"}, ""},
		{"bases", map[string]string{"kustomization.yaml": "bases:\n- " + git + "\n"}, ""},
		{"components", map[string]string{"kustomization.yaml": "resources: [cm.yaml]\ncomponents:\n- " + u + "\n", "cm.yaml": cm}, ""},
		{"generators", map[string]string{"kustomization.yaml": "generators:\n- " + u + "\n"}, ""},
		{"generators config file", map[string]string{
			"kustomization.yaml": "generators: [gen.yaml]\n",
			"gen.yaml":           "apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata:\n  name: g\nfiles:\n- " + u + "\n",
		}, ""},
		{"generators inline config", map[string]string{
			"kustomization.yaml": "generators:\n- |\n  apiVersion: builtin\n  kind: SecretGenerator\n  metadata:\n    name: g\n  files:\n  - key=" + u + "\n",
		}, ""},
		{"transformers", map[string]string{"kustomization.yaml": "resources: [cm.yaml]\ntransformers:\n- " + u + "\n", "cm.yaml": cm}, ""},
		{"transformers PatchTransformer path", map[string]string{
			"kustomization.yaml": "resources: [cm.yaml]\ntransformers: [t.yaml]\n", "cm.yaml": cm, "t.yaml": patchTransformer,
		}, ""},
		{"transformers inline PatchJson6902Transformer", map[string]string{
			"kustomization.yaml": "resources: [cm.yaml]\ntransformers:\n- |\n  apiVersion: builtin\n  kind: PatchJson6902Transformer\n  metadata:\n    name: p\n  target:\n    kind: ConfigMap\n    name: cm\n  path: " + u + "\n",
			"cm.yaml":            cm,
		}, ""},
		// The URL is nowhere in a path field of any file: a transformer
		// folder's inline patch puts it into the PatchTransformer config
		// kustomize builds there. Only the HTTP guard can see it.
		{"transformers folder computes the path", map[string]string{
			"kustomization.yaml":    "resources: [cm.yaml]\ntransformers: [tf]\n",
			"cm.yaml":               cm,
			"tf/kustomization.yaml": "resources: [t.yaml]\npatches:\n- target:\n    kind: PatchTransformer\n  patch: |\n    - op: replace\n      path: /path\n      value: " + u + "\n",
			"tf/t.yaml":             strings.Replace(patchTransformer, u, "placeholder.yaml", 1),
		}, ""},
		{"validators", map[string]string{"kustomization.yaml": "resources: [cm.yaml]\nvalidators:\n- " + u + "\n", "cm.yaml": cm}, ""},
		{"validators config file", map[string]string{
			"kustomization.yaml": "resources: [cm.yaml]\nvalidators: [v.yaml]\n", "cm.yaml": cm, "v.yaml": patchTransformer,
		}, ""},
		{"configMapGenerator files", map[string]string{"kustomization.yaml": "configMapGenerator:\n- name: c\n  files:\n  - " + u + "\n"}, ""},
		{"configMapGenerator files key=", map[string]string{"kustomization.yaml": "configMapGenerator:\n- name: c\n  files:\n  - k=" + u + "\n"}, ""},
		{"configMapGenerator envs", map[string]string{"kustomization.yaml": "configMapGenerator:\n- name: c\n  envs:\n  - " + u + "\n"}, ""},
		{"secretGenerator files", map[string]string{"kustomization.yaml": "secretGenerator:\n- name: s\n  files:\n  - " + u + "\n"}, ""},
		{"patches path", map[string]string{"kustomization.yaml": "resources: [cm.yaml]\npatches:\n- path: " + u + "\n", "cm.yaml": cm}, ""},
		{"patchesStrategicMerge", map[string]string{"kustomization.yaml": "resources: [cm.yaml]\npatchesStrategicMerge:\n- " + u + "\n", "cm.yaml": cm}, ""},
		{"patchesJson6902 path", map[string]string{
			"kustomization.yaml": "resources: [cm.yaml]\npatchesJson6902:\n- target:\n    version: v1\n    kind: ConfigMap\n    name: cm\n  path: " + u + "\n",
			"cm.yaml":            cm,
		}, ""},
		{"openapi path", map[string]string{"kustomization.yaml": "resources: [cm.yaml]\nopenapi:\n  path: " + u + "\n", "cm.yaml": cm}, ""},
		{"crds", map[string]string{"kustomization.yaml": "resources: [cm.yaml]\ncrds:\n- " + u + "\n", "cm.yaml": cm}, ""},
		{"configurations", map[string]string{"kustomization.yaml": "resources: [cm.yaml]\nconfigurations:\n- " + u + "\n", "cm.yaml": cm}, ""},
		{"replacements path", map[string]string{"kustomization.yaml": "resources: [cm.yaml]\nreplacements:\n- path: " + u + "\n", "cm.yaml": cm}, ""},
		{"helmCharts", map[string]string{"kustomization.yaml": "helmCharts:\n- name: chart\n  repo: " + srv.URL + "\n  version: 1.0.0\n"},
			"helm charts are not supported"},
		{"helm generator config", map[string]string{
			"kustomization.yaml": "generators: [helm.yaml]\n",
			"helm.yaml":          "apiVersion: builtin\nkind: HelmChartInflationGenerator\nmetadata:\n  name: h\nname: chart\nrepo: " + srv.URL + "\n",
		}, "helm charts are not supported"},
		{"a base's field", map[string]string{
			"kustomization.yaml":      "resources: [base]\n",
			"base/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- path: " + u + "\n",
			"base/cm.yaml":            cm,
		}, ""},
	}
	for _, allow := range []bool{false, true} {
		for _, tt := range tests {
			name := tt.name
			if allow {
				name = "remote bases allowed/" + name
			}
			t.Run(name, func(t *testing.T) {
				root := t.TempDir()
				for name, content := range tt.files {
					write(t, root, "app/"+name, content)
				}
				res, err := Render(context.Background(), Options{Root: root, Path: "app", AllowRemoteBases: allow})
				var rerr *Error
				if !errors.As(err, &rerr) {
					t.Fatalf("want *render.Error, got %T: %v", err, err)
				}
				if res != nil {
					t.Errorf("objects returned with an error: %v", ids(res.Objects))
				}
				want := tt.want
				if want == "" {
					want = srv.URL
				}
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q: %v", want, err)
				}
				if n := hits.Swap(0); n != 0 {
					t.Errorf("%d requests reached the server; error: %v", n, err)
				}
			})
		}
	}
}

// TestNetworkGuard shows the guard's reach: a request from a goroutine
// running a build fails before any connection, whatever its URL; the
// same request from any other goroutine, or after the build, goes through.
func TestNetworkGuard(t *testing.T) {
	srv, hits := countingServer(t)
	fsys := newRootFS(t.TempDir(), (&Options{}).limits(), true)
	release, err := guardNetwork(fsys)
	if err != nil {
		t.Fatal(err)
	}
	_, err = http.Get(srv.URL + "/x.yaml")
	var nerr *networkError
	if !errors.As(err, &nerr) {
		t.Errorf("request during a build: err = %v, want networkError", err)
	}
	if !errors.As(fsys.refusal, &nerr) {
		t.Errorf("refusal not recorded: %v", fsys.refusal)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests reached the server during a build", n)
	}

	done := make(chan error)
	go func() {
		resp, err := http.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Errorf("request from another goroutine during a build: %v", err)
	}
	release()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("request after the build: %v", err)
	}
	resp.Body.Close()
	if n := hits.Load(); n != 2 {
		t.Errorf("server got %d requests, want 2 (other goroutine, after the build)", n)
	}
}

// TestNetworkGuardAllowedBase: with remote bases allowed, kustomize GETs a
// resource URL before it clones it; that GET is refused as well, but must
// not fail the build, which goes on to clone.
func TestNetworkGuardAllowedBase(t *testing.T) {
	srv, hits := countingServer(t)
	fsys := newRootFS(t.TempDir(), (&Options{}).limits(), true)
	fsys.allowedGET[srv.URL+"/org/repo.git//base?ref=v1"] = true
	release, err := guardNetwork(fsys)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := http.Get(srv.URL + "/org/repo.git//base?ref=v1"); err == nil {
		t.Error("GET of an allowed base went through")
	}
	if fsys.refusal != nil {
		t.Errorf("GET of an allowed base recorded a refusal: %v", fsys.refusal)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}
