package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
// instructions say and waits for the change to reach the cluster.
func TestDevDemo(t *testing.T) {
	if _, err := testenv.BinDir(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", "")
	work := t.TempDir()
	ctx := context.Background()
	out := runDev(t, work)
	text := out.String()
	for _, want := range []string{"embedded kube-apiserver", "podinfo-staging: Ready=True", "podinfo-production: Ready=True", "git commit -am", "tether.dev/resync-at", "hub page:", "commit badge:"} {
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
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	repo := &testenv.GitRepo{Dir: filepath.Join(work, "repos", "demo")}
	file := filepath.Join(repo.Dir, "podinfo-like", "overlays", "staging", "configmap.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), "Hello from staging", "Hello from a commit", 1)
	if _, err := repo.Commit(map[string]string{"podinfo-like/overlays/staging/configmap.yaml": edited}, "Change the greeting"); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: "podinfo-staging", Name: "podinfo-config"}
	waitFor(t, 2*time.Minute, func() bool {
		cm := &corev1.ConfigMap{}
		return c.Get(ctx, key, cm) == nil && cm.Data["PODINFO_UI_MESSAGE"] == "Hello from a commit"
	}, out)
}

// runDev starts `tether dev` and waits until it prints its next steps.
// The command stops (as on Ctrl-C) when the test ends.
func runDev(t *testing.T, work string) *lockedBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	cmd := newRootCmd()
	cmd.SetOut(out)
	cmd.SetErr(out)
	cmd.SetArgs([]string{"dev", "--examples", "../../examples", "--work-dir", work, "--interval", "1s",
		"--cache-dir", filepath.Join(work, "git-cache"), "--leader-elect=false"})
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
