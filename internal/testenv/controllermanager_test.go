package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestControllerManager checks that the controllers tests rely on act: the
// Deployment, ReplicaSet, Job, garbage-collector and namespace controllers.
func TestControllerManager(t *testing.T) {
	start := time.Now()
	cp, err := StartControlPlane(ControlPlaneOptions{WithoutCRDs: true, ControllerManager: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane with controller manager ready in %s", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-controller-manager log (end):\n%s", lastLines(cp.ControllerManagerLog(), 60))
		}
		if err := cp.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	k8s, err := client.New(cp.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	t.Cleanup(cancel)

	t.Run("group", func(t *testing.T) {
		t.Run("deployment gets a ReplicaSet and pods", func(t *testing.T) {
			t.Parallel()
			testDeployment(ctx, t, k8s)
		})
		t.Run("job gets a pod", func(t *testing.T) {
			t.Parallel()
			testJob(ctx, t, k8s)
		})
		t.Run("deleted namespace finishes deleting", func(t *testing.T) {
			t.Parallel()
			testNamespaceDeletion(ctx, t, k8s)
		})
	})
}

func testDeployment(ctx context.Context, t *testing.T, k8s client.Client) {
	ns := newTestNamespace(ctx, t, k8s, "deploy")
	dep := deployment(ns, "web", 2)
	if err := k8s.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	var rs appsv1.ReplicaSet
	eventually(ctx, t, "a ReplicaSet owned by the Deployment", func() (bool, error) {
		var list appsv1.ReplicaSetList
		if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, r := range list.Items {
			if owner := metav1.GetControllerOf(&r); owner != nil && owner.UID == dep.UID {
				rs = r
				return true, nil
			}
		}
		return false, nil
	})
	eventually(ctx, t, "2 Pending pods owned by the ReplicaSet", func() (bool, error) {
		var pods corev1.PodList
		if err := k8s.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return false, err
		}
		n := 0
		for _, p := range pods.Items {
			if owner := metav1.GetControllerOf(&p); owner != nil && owner.UID == rs.UID && p.Status.Phase == corev1.PodPending {
				n++
			}
		}
		return n == 2, nil
	})
	eventually(ctx, t, "Deployment status observed with 2 replicas", func() (bool, error) {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(dep), dep); err != nil {
			return false, err
		}
		return dep.Status.ObservedGeneration == dep.Generation && dep.Status.Replicas == 2 && dep.Status.ReadyReplicas == 0, nil
	})

	// The garbage collector removes what the Deployment owned.
	if err := k8s.Delete(ctx, dep, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the ReplicaSet collected after the Deployment is deleted", func() (bool, error) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(&rs), &appsv1.ReplicaSet{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

func testJob(ctx context.Context, t *testing.T, k8s client.Client) {
	ns := newTestNamespace(ctx, t, k8s, "job")
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "once"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "main", Image: "registry.invalid/once:1"}},
			}},
		},
	}
	if err := k8s.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "a pod for the Job", func() (bool, error) {
		var pods corev1.PodList
		if err := k8s.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"batch.kubernetes.io/job-name": job.Name}); err != nil {
			return false, err
		}
		return len(pods.Items) == 1, nil
	})
	eventually(ctx, t, "Job status with 1 active pod", func() (bool, error) {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(job), job); err != nil {
			return false, err
		}
		return job.Status.Active == 1 && job.Status.StartTime != nil, nil
	})
}

func testNamespaceDeletion(ctx context.Context, t *testing.T, k8s client.Client) {
	name, err := CreateNamespace(ctx, k8s, "doomed")
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "settings"}, Data: map[string]string{"a": "b"}}
	if err := k8s.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, deployment(name, "web", 1)); err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8s.Delete(ctx, ns); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the namespace gone", func() (bool, error) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(ns), ns)
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

func newTestNamespace(ctx context.Context, t *testing.T, k8s client.Client, prefix string) string {
	t.Helper()
	ns, err := CreateNamespace(ctx, k8s, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func deployment(ns, name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.invalid/web:1"}}},
			},
		},
	}
}

// eventually polls cond until it holds, fails, or ctx ends.
func eventually(ctx context.Context, t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	start := time.Now()
	deadline, _ := ctx.Deadline()
	Eventually(t, time.Until(deadline), func() error {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if !ok {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
	t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... %d lines before", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
