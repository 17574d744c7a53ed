package sync

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// The health tests rely on the kube-controller-manager TestMain starts:
// it gives Deployments their ReplicaSets and pods and fills in their
// status. No kubelet runs, so pods stay Pending unless markPodsReady plays
// the kubelet.

// markPodsReady sets every pod of ns that is not Ready yet Running and
// Ready, as a kubelet would once its containers run. It returns how many
// pods of ns are Ready.
func markPodsReady(t testing.TB, ns string) (int, error) {
	t.Helper()
	pods := &corev1.PodList{}
	if err := k8s.List(testContext(t), pods, client.InNamespace(ns)); err != nil {
		return 0, err
	}
	ready := 0
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.DeletionTimestamp != nil {
			continue
		}
		if podReady(pod) {
			ready++
			continue
		}
		patch := client.MergeFrom(pod.DeepCopy())
		now := metav1.Now()
		pod.Status.Phase = corev1.PodRunning
		pod.Status.StartTime = &now
		pod.Status.Conditions = nil
		for _, typ := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: typ, Status: corev1.ConditionTrue, LastTransitionTime: now})
		}
		pod.Status.ContainerStatuses = nil
		for _, c := range pod.Spec.Containers {
			started := true
			pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: &started,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			})
		}
		if err := k8s.Status().Patch(testContext(t), pod, patch); err != nil {
			return ready, fmt.Errorf("make pod %s/%s ready: %w", ns, pod.Name, err)
		}
		ready++
	}
	return ready, nil
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// A Deployment whose pods never become ready fails the health check when
// spec.timeout runs out; the message names it and says why, as kstatus
// does.
func TestHealthTimeout(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "health-timeout")
	_, repo, sha := appRepo(t)
	gs := newGitSync(ns, "app", repo.URL, "./app")
	gs.Spec.Wait = true
	gs.Spec.Timeout = &metav1.Duration{Duration: 20 * time.Second}
	key := create(t, gs)

	start := time.Now()
	got := waitFailed(t, key, v1alpha1.ReasonHealthCheckFailed,
		"health check of "+mainRev(sha), "1 object(s) not ready after ", "Deployment/"+ns+"/web InProgress: Available: 0/1")
	t.Logf("failed after %s: %s", time.Since(start).Round(time.Second), readyOf(got).Message)
	msg := readyOf(got).Message
	if why := msg[strings.Index(msg, "InProgress: ")+len("InProgress: "):]; strings.TrimSpace(why) == "" {
		t.Errorf("the message does not say why the Deployment is not ready: %q", msg)
	}
	if strings.Contains(msg, "ConfigMap/") || strings.Contains(msg, "Service/") {
		t.Errorf("objects that are ready are listed: %q", msg)
	}
	if got.Status.LastAppliedRevision == mainRev(sha) {
		t.Errorf("lastAppliedRevision = %q although the health check failed", got.Status.LastAppliedRevision)
	}
	// The objects were applied all the same; only health is missing.
	mustExist(t, deployment(ns, "web"))
	waitEvent(t, key, corev1.EventTypeWarning, v1alpha1.ReasonHealthCheckFailed, "Deployment/"+ns+"/web")
}

// A Deployment whose pod becomes Ready (set as a kubelet would) passes the
// health check: Ready=True only then.
func TestHealthReady(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "health-ready")
	_, repo, sha := appRepo(t)
	gs := newGitSync(ns, "app", repo.URL, "./app")
	gs.Spec.Wait = true
	gs.Spec.Timeout = &metav1.Duration{Duration: 5 * time.Minute}
	key := create(t, gs)

	// While the pod is Pending the sync waits: Ready is not True.
	eventually(t, waitTimeout, func() error {
		got := getGitSync(t, key)
		c := findCondition(got, v1alpha1.ReconcilingCondition)
		if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, mainRev(sha)) {
			return fmt.Errorf("not reconciling %s: %s", sha, describe(got))
		}
		return get(t, deployment(ns, "web"))
	})
	consistently(t, 3*time.Second, func() error {
		if got := getGitSync(t, key); readyOf(got) != nil && readyOf(got).Status == metav1.ConditionTrue {
			return fmt.Errorf("Ready before the Deployment's pod is: %s", describe(got))
		}
		return nil
	})

	var got *v1alpha1.GitSync
	eventually(t, waitTimeout, func() error {
		n, err := markPodsReady(t, ns)
		if err != nil {
			return err
		}
		got = getGitSync(t, key)
		if c := readyOf(got); c == nil || c.Status != metav1.ConditionTrue || got.Status.LastAppliedRevision != mainRev(sha) {
			return fmt.Errorf("%d pod(s) ready, GitSync: %s", n, describe(got))
		}
		return nil
	})
	d := deployment(ns, "web")
	mustExist(t, d)
	if d.Status.AvailableReplicas != 1 {
		t.Errorf("Ready with %d available replicas", d.Status.AvailableReplicas)
	}
	waitEvent(t, key, corev1.EventTypeNormal, v1alpha1.ReasonSucceeded, mainRev(sha), "all objects ready")
}

// A new revision that arrives while a sync waits for health (timeout 10m)
// cancels the wait and applies at once (kustomize-controller#701).
func TestNewRevisionCancelsHealthWait(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "health-cancel")
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "app")
	sha1 := commit(t, repo, map[string]string{
		"app/kustomization.yaml": kustomization("configmap.yaml"),
		"app/configmap.yaml":     readFile(t, "testdata/app/configmap.yaml"),
	}, nil, "config only")
	gs := newGitSync(ns, "app", repo.URL, "./app")
	gs.Spec.Wait = true
	gs.Spec.Timeout = &metav1.Duration{Duration: 10 * time.Minute}
	key := create(t, gs)
	waitApplied(t, key, mainRev(sha1))

	// A Deployment that never becomes ready: the sync of sha2 waits.
	sha2 := commit(t, repo, map[string]string{
		"app/kustomization.yaml": kustomization("configmap.yaml", "deployment.yaml"),
		"app/deployment.yaml":    readFile(t, "testdata/app/deployment.yaml"),
	}, nil, "add a deployment")
	eventually(t, waitTimeout, func() error {
		got := getGitSync(t, key)
		c := findCondition(got, v1alpha1.ReconcilingCondition)
		if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, mainRev(sha2)) {
			return fmt.Errorf("not reconciling %s: %s", sha2, describe(got))
		}
		return get(t, deployment(ns, "web"))
	})

	start := time.Now()
	sha3 := commit(t, repo, map[string]string{
		"app/kustomization.yaml": kustomization("configmap.yaml"),
		"app/deployment.yaml":    testenv.DeleteFile,
	}, nil, "drop the deployment")
	got := waitApplied(t, key, mainRev(sha3)) // 60s, against a 10m timeout
	t.Logf("the new revision applied %s after its commit", time.Since(start).Round(time.Millisecond))
	if c := findCondition(got, v1alpha1.ReconcilingCondition); c != nil {
		t.Errorf("still Reconciling: %+v", c)
	}
	mustBeAbsent(t, deployment(ns, "web"))
	if n := countEvents(t, key, corev1.EventTypeWarning, v1alpha1.ReasonHealthCheckFailed); n != 0 {
		t.Errorf("%d HealthCheckFailed events: the cancelled wait reported a failure", n)
	}
	waitEvent(t, key, corev1.EventTypeNormal, v1alpha1.ReasonSucceeded, mainRev(sha3))
	for _, e := range eventsOf(t, key) {
		if strings.Contains(e.Note, mainRev(sha2)) && e.Type == corev1.EventTypeNormal {
			t.Errorf("event about the superseded revision: %s %q", e.Reason, e.Note)
		}
	}
}
