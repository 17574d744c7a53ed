// Package deploy_test checks that the installation manifests in deploy/
// build with kustomize and are accepted by a real API server.
package deploy_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/apply"
	"tether.dev/tether/internal/testenv"
	"tether.dev/tether/render"
)

// TestCRDMatchesAPI keeps deploy/crd in step with the generated CRD.
func TestCRDMatchesAPI(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("crd", "tether.dev_gitsyncs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, v1alpha1.CRDYAML) {
		t.Fatal("deploy/crd/tether.dev_gitsyncs.yaml differs from api/v1alpha1/crd: run `make generate`")
	}
}

// TestInstall renders deploy/ and deploy/hub as `kubectl apply -k` would
// and applies them to a real API server.
func TestInstall(t *testing.T) {
	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(ctx, render.Options{Root: root})
	if err != nil {
		t.Fatalf("render deploy/: %v", err)
	}
	kinds := map[string]int{}
	for _, o := range res.Objects {
		kinds[o.GetKind()]++
		if o.GetKind() == "Deployment" && o.GetNamespace() != "tether-system" {
			t.Errorf("agent Deployment in namespace %q, want tether-system", o.GetNamespace())
		}
	}
	for _, k := range []string{"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRoleBinding", "ClusterRole", "Deployment", "Service"} {
		if kinds[k] == 0 {
			t.Errorf("deploy/ renders no %s (got %v)", k, kinds)
		}
	}

	applyAll(ctx, t, c, res.Objects, "install", "deploy/")

	hub, err := render.Render(ctx, render.Options{Root: root, Path: "hub"})
	if err != nil {
		t.Fatalf("render deploy/hub: %v", err)
	}
	kinds = map[string]int{}
	for _, o := range hub.Objects {
		kinds[o.GetKind()]++
	}
	for _, k := range []string{"Deployment", "Service", "PersistentVolumeClaim"} {
		if kinds[k] != 1 {
			t.Errorf("deploy/hub renders %d %s (got %v)", kinds[k], k, kinds)
		}
	}
	applyAll(ctx, t, c, hub.Objects, "install-hub", "deploy/hub")
}

// cluster starts an API server of t's own, without Tether's CRDs (the
// manifests bring them), and returns a client of it.
func cluster(t *testing.T) client.Client {
	t.Helper()
	cp, err := testenv.StartControlPlane(testenv.ControlPlaneOptions{WithoutCRDs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// applyAll plans and applies objs as the owner named owner in
// tether-system, as a sync would; what names the objects in a failure.
func applyAll(ctx context.Context, t *testing.T, c client.Client, objs []*unstructured.Unstructured, owner, what string) {
	t.Helper()
	m := apply.NewManager(c, apply.ManagerOptions{})
	plan, err := m.Plan(ctx, objs, apply.Options{Owner: apply.Owner{Name: owner, Namespace: "tether-system"}, Timeout: time.Minute})
	if err != nil {
		t.Fatalf("plan %s: %v", what, err)
	}
	if _, err := m.Apply(ctx, plan); err != nil {
		t.Fatalf("apply %s: %v", what, err)
	}
}
