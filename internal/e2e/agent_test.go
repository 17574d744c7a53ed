package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// agentProc is a running `tether agent` reporting to a hub.
type agentProc struct {
	*proc
	dir  string
	name string // of its log
	argv []string
}

// startAgent starts `tether agent` against the suite's control plane,
// reporting to hubURL as name with the token in tokenFile. Leader election
// is off: a test runs one agent at a time. GitSyncs in the tests'
// namespaces apply as their namespace's testenv.DeployerAccount, as with
// deploy/.
func startAgent(t *testing.T, dir, hubURL, name, tokenFile string, extra ...string) *agentProc {
	t.Helper()
	a := &agentProc{dir: dir, name: "agent"}
	a.argv = append([]string{suite.tether, "agent", "--kubeconfig", suite.kubeconfig,
		"--cache-dir", filepath.Join(dir, "agent-cache"), "--leader-elect=false",
		"--default-service-account", testenv.DeployerAccount,
		"--hub-url", hubURL, "--agent-name", name, "--token-file", tokenFile}, extra...)
	a.start(t)
	return a
}

// start starts the agent process (again, after stop: same flags, same
// cache, same log).
func (a *agentProc) start(t *testing.T) {
	t.Helper()
	a.proc = startProc(t, a.dir, a.name, a.argv, nil)
}

// newNamespace makes a namespace of the test's own, where its
// testenv.DeployerAccount may do anything (and nothing elsewhere).
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	return testenv.NewDeployerNamespace(t, suite.k8s, prefix, "cluster-admin", false)
}

// newGitServer serves a fresh root of repositories on loopback.
func newGitServer(t *testing.T) *testenv.GitServer {
	t.Helper()
	g, err := testenv.StartGitServer(t.TempDir(), testenv.GitServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// configMap is the one file of the test app: ConfigMap "settings" with v.
func configMap(v string) map[string]string {
	return map[string]string{"app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  v: \"" + v + "\"\n"}
}

// commit commits the app with value v and returns the commit's sha.
func commit(t *testing.T, repo *testenv.GitRepo, v string) string {
	t.Helper()
	sha, err := repo.Commit(configMap(v), "set v to "+v)
	if err != nil {
		t.Fatal(err)
	}
	return sha
}

// createGitSync creates a GitSync of the app at url and branch in ns; it
// is deleted when the test ends, so later tests' agents leave it alone.
func createGitSync(t *testing.T, ns, name, url, branch string, interval time.Duration) *v1alpha1.GitSync {
	t.Helper()
	gs := &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.GitSyncSpec{
			Source:   v1alpha1.GitSource{URL: url, Ref: v1alpha1.GitRef{Branch: branch}},
			Path:     "./app",
			Interval: metav1.Duration{Duration: interval},
		},
	}
	if err := suite.k8s.Create(context.Background(), gs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = suite.k8s.Delete(ctx, gs)
	})
	return gs
}

// getGitSync reads a GitSync.
func getGitSync(t *testing.T, ns, name string) *v1alpha1.GitSync {
	t.Helper()
	gs := &v1alpha1.GitSync{}
	if err := suite.k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, gs); err != nil {
		t.Fatal(err)
	}
	return gs
}

// waitApplied waits until ConfigMap settings in ns holds v.
func waitApplied(t *testing.T, ns, v string) {
	t.Helper()
	eventually(t, 2*time.Minute, fmt.Sprintf("ConfigMap %s/settings v=%q", ns, v), func() (bool, string) {
		got, err := configValue(ns)
		return err == nil && got == v, fmt.Sprintf("v=%q err=%v", got, err)
	})
}

// configValue reads v of ConfigMap settings in ns.
func configValue(ns string) (string, error) {
	cm := &corev1.ConfigMap{}
	err := suite.k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "settings"}, cm)
	return cm.Data["v"], err
}

func short(sha string) string { return sha[:7] }
