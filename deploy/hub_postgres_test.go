package deploy_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"tether.dev/tether/render"
)

// TestInstallHubReplicas renders deploy/hub-postgres, the hub as three
// replicas on PostgreSQL, checks what makes it one (the database URL from
// the Secret, the peer URL from the pod's IP, no volume), and applies it
// to a real API server.
func TestInstallHubReplicas(t *testing.T) {
	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(ctx, render.Options{Root: root, Path: "hub-postgres"})
	if err != nil {
		t.Fatalf("render deploy/hub-postgres: %v", err)
	}
	kinds := map[string]int{}
	var dep appsv1.Deployment
	for _, o := range res.Objects {
		kinds[o.GetKind()]++
		if o.GetKind() == "Deployment" {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &dep); err != nil {
				t.Fatal(err)
			}
		}
	}
	if kinds["Deployment"] != 1 || kinds["Service"] != 1 || kinds["PersistentVolumeClaim"] != 0 {
		t.Fatalf("deploy/hub-postgres renders %v, want a Deployment, a Service and no volume claim", kinds)
	}
	if dep.Namespace != "tether-system" || dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
		t.Errorf("hub Deployment %s/%s with %v replicas, want tether-system and 3", dep.Namespace, dep.Name, dep.Spec.Replicas)
	}
	if dep.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Errorf("strategy %q, want RollingUpdate (replicas share the database)", dep.Spec.Strategy.Type)
	}
	if len(dep.Spec.Template.Spec.Volumes) != 1 || dep.Spec.Template.Spec.Volumes[0].Name != "secrets" {
		t.Errorf("volumes %+v, want only the secrets", dep.Spec.Template.Spec.Volumes)
	}
	c0 := dep.Spec.Template.Spec.Containers[0]
	if !slices.Contains(c0.Args, "--peer-url=http://$(POD_IP):8080") || slices.ContainsFunc(c0.Args, func(a string) bool { return len(a) > 4 && a[:5] == "--db=" }) {
		t.Errorf("hub args %q: want --peer-url from the pod IP and no --db (it comes from TETHER_HUB_DB)", c0.Args)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c0.Env {
		env[e.Name] = e
	}
	if e := env["TETHER_HUB_DB"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "tether-hub" || e.ValueFrom.SecretKeyRef.Key != "db-url" {
		t.Errorf("TETHER_HUB_DB %+v, want the Secret tether-hub's db-url", e)
	}
	if e := env["POD_IP"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("POD_IP %+v, want status.podIP", e)
	}
	for _, m := range c0.VolumeMounts {
		if m.Name == "data" {
			t.Errorf("the data volume is still mounted: %+v", c0.VolumeMounts)
		}
	}

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tether-system"}}); err != nil {
		t.Fatal(err)
	}
	applyAll(ctx, t, c, res.Objects, "install-hub", "deploy/hub-postgres")
}
