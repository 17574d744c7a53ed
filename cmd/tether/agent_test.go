package main

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// agentProc is one `tether agent` run in-process with its own context, as a
// replica of the agent Deployment would run.
type agentProc struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startAgent(t *testing.T, kubeconfig, cacheDir string, extra ...string) *agentProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := newRootCmd()
	cmd.SetOut(os.Stderr)
	cmd.SetErr(os.Stderr)
	cmd.SetArgs(append([]string{"agent", "--kubeconfig", kubeconfig, "--cache-dir", cacheDir, "--log-level", "error"}, extra...))
	p := &agentProc{cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(p.stop)
	return p
}

// stop stops the agent and waits for it, once however often it is called.
func (p *agentProc) stop() {
	p.once.Do(func() {
		p.cancel()
		select {
		case <-p.done:
		case <-time.After(time.Minute):
		}
	})
}

// TestLeaderElection runs two agent replicas: one holds the lease in
// --namespace and syncs; when it stops, the other takes over and syncs the
// next commit.
func TestLeaderElection(t *testing.T) {
	cp, c := startControlPlane(t)
	ctx := context.Background()
	repo := newRepo(t, settingsYAML("one"))

	a := startAgent(t, cp.KubeconfigPath, filepath.Join(t.TempDir(), "a"), "--namespace", "agents")
	waitFor(t, time.Minute, func() bool { return leaseHolder(ctx, c) != "" }, &lockedBuffer{})
	b := startAgent(t, cp.KubeconfigPath, filepath.Join(t.TempDir(), "b"), "--namespace", "agents")
	first := leaseHolder(ctx, c)

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}}); err != nil {
		t.Fatal(err)
	}
	// A platform GitSync: in the agent's namespace, applying as the agent.
	gs := appGitSync("agents", repo.URL)
	gs.Spec.TargetNamespace = "app"
	if err := c.Create(ctx, gs); err != nil {
		t.Fatal(err)
	}
	waitValue(t, c, "one")
	waitReady(t, c, client.ObjectKeyFromObject(gs))

	a.stop() // the leader releases the lease on its way out
	_ = b
	if _, err := repo.Commit(settingsYAML("two"), "two"); err != nil {
		t.Fatal(err)
	}
	waitValue(t, c, "two")
	waitReady(t, c, client.ObjectKeyFromObject(gs))
	if second := leaseHolder(ctx, c); second == "" || second == first {
		t.Fatalf("lease holder after the leader stopped = %q, first holder was %q", second, first)
	}
}

// waitReady waits until the GitSync reports Ready=True for its spec.
func waitReady(t *testing.T, c client.Client, key types.NamespacedName) {
	t.Helper()
	waitFor(t, 2*time.Minute, func() bool {
		gs := &v1alpha1.GitSync{}
		if c.Get(context.Background(), key, gs) != nil {
			return false
		}
		ready := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition)
		return ready != nil && ready.Status == metav1.ConditionTrue && gs.Status.ObservedGeneration == gs.Generation
	}, &lockedBuffer{})
}

func leaseHolder(ctx context.Context, c client.Client) string {
	l := &coordinationv1.Lease{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "agents", Name: "tether-agent"}, l); err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func waitValue(t *testing.T, c client.Client, want string) {
	t.Helper()
	waitFor(t, 2*time.Minute, func() bool {
		cm := &corev1.ConfigMap{}
		return c.Get(context.Background(), types.NamespacedName{Namespace: "app", Name: "settings"}, cm) == nil && cm.Data["v"] == want
	}, &lockedBuffer{})
}

// newRepo serves a repository "app" on loopback until the test ends and
// commits files to it.
func newRepo(t *testing.T, files map[string]string) *testenv.GitRepo {
	t.Helper()
	git, err := testenv.StartGitServer(t.TempDir(), testenv.GitServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = git.Close() })
	repo, err := git.CreateRepo("app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Commit(files, "first"); err != nil {
		t.Fatal(err)
	}
	return repo
}

// settingsYAML is app/cm.yaml: a ConfigMap "settings" with data v.
func settingsYAML(v string) map[string]string {
	return map[string]string{"app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  v: \"" + v + "\"\n"}
}

// appGitSync is a GitSync of app/ in repoURL polled every second.
func appGitSync(ns, repoURL string) *v1alpha1.GitSync {
	return &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec:       v1alpha1.GitSyncSpec{Source: v1alpha1.GitSource{URL: repoURL}, Path: "./app", Interval: metav1.Duration{Duration: time.Second}},
	}
}

// startControlPlane starts a control plane of the test's own, stopped when
// the test ends, and an admin client of it.
func startControlPlane(t *testing.T) (*testenv.ControlPlane, client.Client) {
	t.Helper()
	cp, err := testenv.StartControlPlane(testenv.ControlPlaneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	c, err := client.New(cp.Config, client.Options{Scheme: newScheme()})
	if err != nil {
		t.Fatal(err)
	}
	return cp, c
}
