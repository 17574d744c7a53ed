package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/api/v1alpha1"
)

// TestResyncAppliesNewestCommit: `tether resync` right after a push applies
// the pushed commit, even when the agent reuses ref listings for an hour
// (--source-ttl): a resync lists the ref first, as the README promises.
func TestResyncAppliesNewestCommit(t *testing.T) {
	cp, c := startControlPlane(t)
	ctx := context.Background()
	repo := newRepo(t, settingsYAML("one"))
	const ns = "platform"
	startAgent(t, cp.KubeconfigPath, filepath.Join(t.TempDir(), "cache"), "--leader-elect=false", "--namespace", ns, "--source-ttl", "1h")
	waitFor(t, time.Minute, func() bool { return c.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{}) == nil }, &lockedBuffer{})
	gs := appGitSync(ns, repo.URL)
	if err := c.Create(ctx, gs); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: ns, Name: "app"}
	waitReady(t, c, key)

	sha, err := repo.Commit(settingsYAML("two"), "two")
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCmd(t, "resync", ns+"/app", "--kubeconfig", cp.KubeconfigPath, "--wait", "2m")
	if code != 0 {
		t.Fatalf("resync: exit %d: %s %s", code, out, errOut)
	}
	got := &v1alpha1.GitSync{}
	if err := c.Get(ctx, key, got); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got.Status.LastAppliedRevision, sha) {
		t.Fatalf("after resync: applied %q, want the pushed commit %s", got.Status.LastAppliedRevision, sha)
	}
	live := &corev1.ConfigMap{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "settings"}, live); err != nil || live.Data["v"] != "two" {
		t.Fatalf("ConfigMap after resync: %v %v", live.Data, err)
	}
}
