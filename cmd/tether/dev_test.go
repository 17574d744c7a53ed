package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// lockedBuffer is an io.Writer safe to read while the command writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDevDemo runs what `make run` runs: `tether dev` with the embedded
// control plane, then commits to the demo repository as its printed
// instructions say and waits for the change to reach the cluster. The
// GitSyncs poll once an hour here, and the hub's webhook counter shows
// that the repository's post-commit hook delivered the push. (The counter
// is the proof, not the interval: any reconcile, e.g. one kicked by a
// watched object's change, lists the ref again.)
func TestDevDemo(t *testing.T) {
	if _, err := testenv.BinDir(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", "")
	work := t.TempDir()
	ctx := context.Background()
	out := runDev(t, work, "--interval", "1h")
	text := out.String()
	for _, want := range []string{"embedded kube-apiserver, etcd and kube-controller-manager", "podinfo-staging: Ready=True", "podinfo-production: Ready=True",
		"git commit -am", "post-commit hook calls the hub's", "poll (every 1h0m0s)", "tether.dev/resync-at", "hub page:", "commit badge:", "Pods stay Pending"} {
		if !strings.Contains(text, want) {
			t.Fatalf("dev output lacks %q:\n%s", want, text)
		}
	}
	// The badge it points at shows the synced revision once the agent's
	// report reached the hub.
	badge := regexp.MustCompile(`status badge:\s+(\S+)`).FindStringSubmatch(text)
	if badge == nil {
		t.Fatalf("no badge URL in:\n%s", text)
	}
	waitFor(t, time.Minute, func() bool {
		resp, err := http.Get(badge[1])
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), "synced")
	}, out)

	// The page needs the API token the demo printed; with it, it shows
	// the demo's GitSyncs.
	login := regexp.MustCompile(`hub page:\s+(\S+)/login\s+\(sign in with the API token in (\S+)\)`).FindStringSubmatch(text)
	if login == nil {
		t.Fatalf("no login instructions in:\n%s", text)
	}
	if resp, err := http.Get(login[1] + "/"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the hub page without a token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	apiToken, err := os.ReadFile(login[2])
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, login[1]+"/", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(apiToken)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "podinfo") {
		t.Errorf("the hub page with the demo's token: %d\n%s", resp.StatusCode, page)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(work, "kubeconfig"))

	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: newScheme()})
	if err != nil {
		t.Fatal(err)
	}
	// kube-controller-manager runs: the Deployment has its ReplicaSet.
	waitFor(t, time.Minute, func() bool {
		rs := &appsv1.ReplicaSetList{}
		return c.List(ctx, rs, client.InNamespace("podinfo-staging")) == nil && len(rs.Items) > 0
	}, out)

	// The hooks and the secret they read are the user's alone, and the
	// secret is in no hook, output or log.
	secret, err := os.ReadFile(filepath.Join(work, "webhook.secret"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.CheckMode(t, filepath.Join(work, "webhook.secret"), 0o600)
	agentLog, err := os.ReadFile(filepath.Join(work, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"post-commit", "post-merge", "post-rewrite", "post-receive"} {
		p := filepath.Join(work, "repos", "demo", ".git", "hooks", name)
		testenv.CheckMode(t, p, 0o700)
		hook, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(hook, secret) {
			t.Errorf("%s holds the webhook secret", p)
		}
	}
	if strings.Contains(text, string(secret)) || bytes.Contains(agentLog, secret) {
		t.Error("the webhook secret is in the demo's output or the agent's log")
	}

	// Commit to deploy exactly as the printed next steps say, with the
	// kubectl of the control plane's version.
	kubeEnv := []string{"KUBECONFIG=" + filepath.Join(work, "kubeconfig"),
		"GIT_AUTHOR_NAME=Demo", "GIT_AUTHOR_EMAIL=demo@tether.dev", "GIT_COMMITTER_NAME=Demo", "GIT_COMMITTER_EMAIL=demo@tether.dev"}
	runPrinted(t, text, "What to do next", "Rollout health", kubeEnv)
	key := types.NamespacedName{Namespace: "podinfo-staging", Name: "podinfo-config"}
	waitFor(t, 2*time.Minute, func() bool {
		cm := &corev1.ConfigMap{}
		return c.Get(ctx, key, cm) == nil && cm.Data["PODINFO_UI_MESSAGE"] == "Hello again"
	}, out)
	// And it came by the hook: the hub took one authentic push webhook.
	req, _ = http.NewRequest(http.MethodGet, login[1]+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(apiToken)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `tether_hub_webhooks_total{provider="gitlab",result="dispatched"} 1`; !strings.Contains(string(metrics), want) {
		t.Errorf("hub metrics lack %s:\n%s", want, grepLines(string(metrics), "webhooks"))
	}

	// The rest of the printed steps work as they say: the hand-made change
	// is seen as drift and undone.
	runPrinted(t, text, "Rollout health", "Press Ctrl-C", kubeEnv)
	waitFor(t, time.Minute, func() bool {
		cm, gs := &corev1.ConfigMap{}, &v1alpha1.GitSync{}
		if c.Get(ctx, key, cm) != nil || cm.Data["PODINFO_UI_MESSAGE"] != "Hello again" {
			return false
		}
		if c.Get(ctx, types.NamespacedName{Namespace: "tether-system", Name: "podinfo-staging"}, gs) != nil || gs.Status.Drift == nil {
			return false
		}
		for _, o := range gs.Status.Drift.Objects {
			if o.Name == "podinfo-config" && o.Corrected {
				return true
			}
		}
		return false
	}, out)

	// Rollout health is as the steps say: the production GitSync, told to
	// wait, fails its health check on the Deployment that has no running
	// Pods, and the hub's GitSync page shows that and the HPA's warnings.
	prod := types.NamespacedName{Namespace: "tether-system", Name: "podinfo-production"}
	waitFor(t, 3*time.Minute, func() bool {
		gs := &v1alpha1.GitSync{}
		if c.Get(ctx, prod, gs) != nil {
			return false
		}
		ready := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition)
		return ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason == v1alpha1.ReasonHealthCheckFailed &&
			strings.Contains(ready.Message, "Deployment/podinfo-production/podinfo InProgress")
	}, out)
	waitFor(t, 2*time.Minute, func() bool {
		req, _ := http.NewRequest(http.MethodGet, login[1]+"/gitsyncs/dev/tether-system/podinfo-production", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(apiToken)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		page, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(page), "HealthCheckFailed") && strings.Contains(string(page), "FailedGetResourceMetric")
	}, out)
}

// runPrinted runs, in one shell, the commands the demo printed between the
// lines holding from and to (the indented lines that start with a command
// of the instructions), with the control plane's kubectl first on PATH.
func runPrinted(t *testing.T, text, from, to string, env []string) {
	t.Helper()
	i, j := strings.Index(text, from), strings.Index(text, to)
	if i < 0 || j < i {
		t.Fatalf("no section %q..%q in:\n%s", from, to, text)
	}
	cmdLine := regexp.MustCompile(`^  (export|kubectl|cd|sed|git|curl|cat) `)
	var script []string
	for _, l := range strings.Split(text[i:j], "\n") {
		if cmdLine.MatchString(l) {
			script = append(script, strings.TrimSpace(l))
		}
	}
	if len(script) == 0 {
		t.Fatalf("no commands in section %q", from)
	}
	bin, err := testenv.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-ec", strings.Join(script, "\n"))
	cmd.Env = append(os.Environ(), append(env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the printed steps failed: %v\n%s\n--- output:\n%s", err, strings.Join(script, "\n"), b)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// runDev starts `tether dev` and waits until it prints its next steps.
// The command stops (as on Ctrl-C) when the test ends.
func runDev(t *testing.T, work string, args ...string) *lockedBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	cmd := newRootCmd()
	cmd.SetOut(out)
	cmd.SetErr(out)
	cmd.SetArgs(append([]string{"dev", "--examples", "../../examples", "--work-dir", work, "--interval", "1s",
		"--cache-dir", filepath.Join(work, "git-cache"), "--leader-elect=false"}, args...))
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("tether dev: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("tether dev did not stop within a minute of Ctrl-C")
		}
	})
	waitFor(t, 3*time.Minute, func() bool { return strings.Contains(out.String(), "Press Ctrl-C to stop.") }, out)
	return out
}

// TestDevOnExistingCluster runs `make run` with KUBECONFIG set: the demo
// uses that cluster, installs the CRD there and deploys into it.
func TestDevOnExistingCluster(t *testing.T) {
	cp, err := testenv.StartControlPlane(testenv.ControlPlaneOptions{WithoutCRDs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	t.Setenv("KUBECONFIG", cp.KubeconfigPath)
	text := runDev(t, t.TempDir()).String()
	for _, want := range []string{"using the cluster of " + cp.KubeconfigPath, "installing the GitSync CRD", "podinfo-staging: Ready=True", "export KUBECONFIG=" + cp.KubeconfigPath} {
		if !strings.Contains(text, want) {
			t.Fatalf("dev output lacks %q:\n%s", want, text)
		}
	}
	c, err := client.New(cp.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "podinfo-staging", Name: "podinfo-config"}, cm); err != nil {
		t.Fatalf("demo objects not in the KUBECONFIG cluster: %v", err)
	}
}

// waitFor polls ok for up to limit and shows out when it gives up.
func waitFor(t *testing.T, limit time.Duration, ok func() bool, out *lockedBuffer) {
	t.Helper()
	testenv.Eventually(t, limit, func() error {
		if !ok() {
			return fmt.Errorf("not done; output so far:\n%s", out.String())
		}
		return nil
	})
}
