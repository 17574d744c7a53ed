package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// TestResyncAppliesNewestCommit: `tether resync` right after a push applies
// the pushed commit, even when the agent reuses ref listings for an hour
// (--source-ttl): a resync lists the ref first, as the README promises.
func TestResyncAppliesNewestCommit(t *testing.T) {
	cp, c := startControlPlane(t)
	ctx := context.Background()
	git, err := testenv.StartGitServer(t.TempDir(), testenv.GitServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = git.Close() })
	repo, err := git.CreateRepo("app")
	if err != nil {
		t.Fatal(err)
	}
	cm := func(v string) map[string]string {
		return map[string]string{"app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  v: " + v + "\n"}
	}
	if _, err := repo.Commit(cm("one"), "one"); err != nil {
		t.Fatal(err)
	}
	const ns = "platform"
	startAgent(t, cp.KubeconfigPath, filepath.Join(t.TempDir(), "cache"), "--leader-elect=false", "--namespace", ns, "--source-ttl", "1h")
	waitFor(t, time.Minute, func() bool { return c.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{}) == nil }, &lockedBuffer{})
	gs := &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec:       v1alpha1.GitSyncSpec{Source: v1alpha1.GitSource{URL: repo.URL}, Path: "./app", Interval: metav1.Duration{Duration: time.Second}},
	}
	if err := c.Create(ctx, gs); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: ns, Name: "app"}
	waitReady(t, c, key)

	sha, err := repo.Commit(cm("two"), "two")
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
