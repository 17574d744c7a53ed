package sync

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// hpaYAML autoscales Deployment web. The cluster's
// kube-controller-manager has no metrics to act on, so between its bounds
// only the test scales.
const hpaYAML = `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 10
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: 80}
`

const scaledNote = "spec.replicas of Deployment/web ignored: scaled by HorizontalPodAutoscaler/web"

// replicasOf reads Deployment web's spec.replicas (-1 when unset).
func replicasOf(t *testing.T, ns string) int32 {
	t.Helper()
	d := deployment(ns, "web")
	if err := k8s.Get(testContext(t), client.ObjectKeyFromObject(d), d); err != nil {
		t.Fatal(err)
	}
	return ptrValue(d.Spec.Replicas)
}

// An HPA in Git owns its target's replicas: drift (mode correct) leaves
// them to it, without an ignore rule, and says so in the Drifted
// condition; a hand edit of the same Deployment is still corrected.
func TestDriftLeavesAutoscaledReplicas(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "drift-hpa")
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "app")
	resources := kustomization("deployment.yaml", "configmap.yaml", "service.yaml", "hpa.yaml")
	sha := commit(t, repo, map[string]string{"app/hpa.yaml": hpaYAML, "app/kustomization.yaml": resources},
		map[string]string{"app": "testdata/app"}, "app with an autoscaler")
	gs := newGitSync(ns, "app", repo.URL, "./app")
	gs.Spec.Drift.Mode = v1alpha1.DriftCorrect
	key := create(t, gs)
	waitApplied(t, key, mainRev(sha))

	// The autoscaler scales; Git still says replicas: 1.
	scale := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":4}}`))
	if err := k8s.Patch(testContext(t), deployment(ns, "web"), scale, client.FieldOwner("hpa-controller")); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func() error {
		c := meta.FindStatusCondition(getGitSync(t, key).Status.Conditions, v1alpha1.DriftedCondition)
		if c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, scaledNote) {
			return fmt.Errorf("%s", driftedStatus(getGitSync(t, key)))
		}
		return nil
	})
	consistently(t, 3*testInterval, func() error {
		if n := replicasOf(t, ns); n != 4 {
			return fmt.Errorf("replicas = %d: the autoscaler's scaling was reverted", n)
		}
		if got := getGitSync(t, key); meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.DriftedCondition) {
			return fmt.Errorf("reported as drift: %s", driftedStatus(got))
		}
		return nil
	})
	if n := countEvents(t, key, corev1.EventTypeWarning, v1alpha1.ReasonDriftDetected); n != 0 {
		t.Errorf("%d DriftDetected events for the autoscaler's scaling, want 0", n)
	}

	// As the Kubernetes docs advise, Git drops replicas once an HPA manages
	// them: a correction of the Deployment then leaves them alone too.
	deploy := strings.Replace(readFile(t, "testdata/app/deployment.yaml"), "  replicas: 1\n", "", 1)
	if strings.Contains(deploy, "replicas") {
		t.Fatal("testdata/app/deployment.yaml changed: cannot drop replicas")
	}
	sha = commit(t, repo, map[string]string{"app/deployment.yaml": deploy}, nil, "replicas are the HPA's")
	waitApplied(t, key, mainRev(sha))
	edit := client.RawPatch(types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}]`))
	if err := k8s.Patch(testContext(t), deployment(ns, "web"), edit, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, key, corev1.EventTypeWarning, v1alpha1.ReasonDriftDetected, "Deployment/"+ns+"/web", "/spec/template/spec/containers/0/image", "kubectl-edit")
	eventually(t, waitTimeout, func() error {
		d := deployment(ns, "web")
		if err := k8s.Get(testContext(t), client.ObjectKeyFromObject(d), d); err != nil {
			return err
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "nginx:1.27" {
			return fmt.Errorf("image = %q, want it corrected to nginx:1.27", img)
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 4 {
			return fmt.Errorf("replicas = %v after the correction, want the autoscaler's 4", d.Spec.Replicas)
		}
		got := getGitSync(t, key)
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.DriftedCondition)
		// Corrected; a later check (the Deployment controller annotates a
		// rollout) may since have said NoDrift.
		if c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, scaledNote) ||
			got.Status.Drift == nil || len(got.Status.Drift.Objects) != 1 || !got.Status.Drift.Objects[0].Corrected {
			return fmt.Errorf("%s", driftedStatus(got))
		}
		return nil
	})
}
