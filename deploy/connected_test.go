package deploy_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"tether.dev/tether/deploy"
	"tether.dev/tether/render"
)

// TestEmbeddedMatchesFolder: `tether install` applies the files of this
// folder, not a stale copy.
func TestEmbeddedMatchesFolder(t *testing.T) {
	dir := t.TempDir()
	if _, err := deploy.UnpackConnected(dir); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(filepath.Join(dir, "deploy"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(dir, "deploy"), p)
		want, err := os.ReadFile(rel)
		if err != nil {
			return err
		}
		if got, _ := os.ReadFile(p); string(got) != string(want) {
			t.Errorf("embedded %s differs from the folder", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"kustomization.yaml", "agent.yaml", "agent-service.yaml", "components/hub-connection/agent-patch.yaml", "hub/hub.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, "deploy", f)); err != nil {
			t.Errorf("%s is not embedded: %v", f, err)
		}
	}
}

// TestHubConnectionComponent renders deploy/ with the component, as an
// overlay lists it, and checks what it adds to the agent.
func TestHubConnectionComponent(t *testing.T) {
	dir := t.TempDir()
	overlay, err := deploy.UnpackConnected(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(context.Background(), render.Options{Root: dir, Path: overlay})
	if err != nil {
		t.Fatalf("render deploy/ with components/hub-connection: %v", err)
	}
	var dep *appsv1.Deployment
	for _, o := range res.Objects {
		if o.GetKind() == "Deployment" {
			dep = &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, dep); err != nil {
				t.Fatal(err)
			}
		}
	}
	if dep == nil {
		t.Fatal("no agent Deployment")
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	for _, want := range []string{"--hub-url=$(TETHER_HUB_URL)", "--agent-name=$(TETHER_AGENT_NAME)", "--token-file=/var/run/tether/hub/token", "--cache-dir=/cache"} {
		if !slices.Contains(ctr.Args, want) {
			t.Errorf("agent args %q lack %q", ctr.Args, want)
		}
	}
	env := map[string]string{}
	for _, e := range ctr.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			env[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	if env["TETHER_HUB_URL"] != deploy.ConnectionSecret+"/hub-url" || env["TETHER_AGENT_NAME"] != deploy.ConnectionSecret+"/agent-name" {
		t.Errorf("agent env from Secrets: %v", env)
	}
	var mounted bool
	for _, v := range dep.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == deploy.ConnectionSecret && len(v.Secret.Items) == 1 && v.Secret.Items[0].Key == "token" {
			mounted = true
		}
	}
	if !mounted || !strings.Contains(ctr.Image, "ghcr.io/tether-dev/tether") {
		t.Errorf("token volume mounted: %v; image %q", mounted, ctr.Image)
	}
}
