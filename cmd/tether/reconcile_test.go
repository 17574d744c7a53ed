package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/api/v1alpha1"
)

// TestReconcileSuspendResume drives a running agent with reconcile, suspend
// and resume, as a person would after a push: reconcile applies the pushed
// commit and says which; a failing sync exits non-zero with its message;
// resume waits for the sync that applies what was pushed while suspended.
func TestReconcileSuspendResume(t *testing.T) {
	cp, c := startControlPlane(t)
	ctx := context.Background()
	kc := cp.KubeconfigPath
	repo := newRepo(t, settingsYAML("one"))
	const ns = "platform"
	startAgent(t, kc, filepath.Join(t.TempDir(), "cache"), "--leader-elect=false", "--namespace", ns, "--source-ttl", "1h")
	waitFor(t, time.Minute, func() bool { return c.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{}) == nil }, &lockedBuffer{})
	if err := c.Create(ctx, appGitSync(ns, repo.URL)); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: ns, Name: "app"}
	waitReady(t, c, key)
	value := func() string {
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "settings"}, cm); err != nil {
			t.Fatal(err)
		}
		return cm.Data["v"]
	}

	sha, err := repo.Commit(settingsYAML("two"), "two")
	if err != nil {
		t.Fatal(err)
	}
	// --source-ttl 1h: only a reconcile that lists the ref again sees it.
	out, errOut, code := runCmd(t, "reconcile", "app", "--kubeconfig", kc, "-n", ns, "--with-source", "--timeout", "2m")
	if code != 0 || out != "✔ applied revision main@sha1:"+sha+"\n" {
		t.Fatalf("reconcile: exit %d, stdout %q, stderr %q; want the pushed commit %s", code, out, errOut, sha)
	}
	if v := value(); v != "two" {
		t.Fatalf("after reconcile the ConfigMap holds %q, want two", v)
	}

	out, errOut, code = runCmd(t, "suspend", "app", "--kubeconfig", kc, "-n", ns)
	gs := &v1alpha1.GitSync{}
	if err := c.Get(ctx, key, gs); err != nil || code != 0 || !gs.Spec.Suspend || !strings.Contains(out, "suspended") {
		t.Fatalf("suspend: exit %d, %q %q, spec.suspend=%v %v", code, out, errOut, gs.Spec.Suspend, err)
	}
	if _, errOut, code := runCmd(t, "reconcile", "app", "--kubeconfig", kc, "-n", ns); code == 0 || !strings.Contains(errOut, "is suspended") {
		t.Fatalf("reconcile of a suspended GitSync: exit %d, %q", code, errOut)
	}
	sha3, err := repo.Commit(settingsYAML("three"), "three")
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCmd(t, "resume", "app", "--kubeconfig", kc, "-n", ns, "--timeout", "2m")
	if code != 0 || out != "✔ applied revision main@sha1:"+sha3+"\n" {
		t.Fatalf("resume: exit %d, stdout %q, stderr %q; want %s", code, out, errOut, sha3)
	}
	if v := value(); v != "three" {
		t.Fatalf("when resume returned the ConfigMap held %q, want three", v)
	}
	if err := c.Get(ctx, key, gs); err != nil || gs.Spec.Suspend {
		t.Fatalf("after resume spec.suspend=%v %v", gs.Spec.Suspend, err)
	}

	// A GitSync whose path is not in the repository fails to render.
	broken := appGitSync(ns, repo.URL)
	broken.Name, broken.Spec.Path = "broken", "./missing"
	if err := c.Create(ctx, broken); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, func() bool {
		gs := &v1alpha1.GitSync{}
		return c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "broken"}, gs) == nil &&
			meta.IsStatusConditionFalse(gs.Status.Conditions, v1alpha1.ReadyCondition)
	}, &lockedBuffer{})
	out, errOut, code = runCmd(t, "reconcile", "broken", "--kubeconfig", kc, "-n", ns, "--timeout", "2m")
	if code == 0 || out != "" || !strings.Contains(errOut, "GitSync platform/broken: sync failed: Ready=False (RenderFailed)") || !strings.Contains(errOut, "missing") {
		t.Fatalf("reconcile of a failing GitSync: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	for _, verb := range []string{"reconcile", "suspend", "resume"} {
		_, errOut, code := runCmd(t, verb, "nope", "--kubeconfig", kc, "-n", ns)
		if code == 0 || !strings.Contains(errOut, "GitSync platform/nope not found") {
			t.Errorf("%s of an unknown GitSync: exit %d, %q", verb, code, errOut)
		}
	}
}

// TestReconcileWithoutAgent gives up after --timeout with what the GitSync
// shows, instead of waiting forever.
func TestReconcileWithoutAgent(t *testing.T) {
	cp, c := startControlPlane(t)
	gs := createSynced(t, c, "team-a", "app", 0, "Applied revision main@sha1:"+testSHA)
	out, errOut, code := runCmd(t, "reconcile", "app", "--kubeconfig", cp.KubeconfigPath, "-n", "team-a", "--timeout", "3s")
	if code == 0 || out != "" || !strings.Contains(errOut, "did not handle the request in time") || !strings.Contains(errOut, "Ready=True (Succeeded)") {
		t.Fatalf("reconcile without an agent: exit %d, %q, %q", code, out, errOut)
	}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "team-a", Name: "app"}, gs); err != nil || gs.Annotations[v1alpha1.ResyncAnnotation] == "" {
		t.Fatalf("reconcile did not set %s: %v %v", v1alpha1.ResyncAnnotation, gs.Annotations, err)
	}
}
