package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// runWebhook measures the webhook path end to end (`bench -mode webhook`):
// a commit, GitHub's signed push webhook to `tether hub`, "sync now" down
// the channel to `tether agent`, the agent applies it. The GitSync polls
// once an hour, so only the webhook moves it. For each of n commits it
// times commit → object changed in the cluster and commit → the hub's
// badge shows the new sha. Hub and agent are the real binary, as separate
// processes, on loopback.
func runWebhook(tetherBin string, n int) error {
	ctx := context.Background()
	e, err := startEnv("tether-bench-webhook-")
	if err != nil {
		return err
	}
	defer e.close()
	work, cp, git := e.work, e.cp, e.git
	repo, err := git.CreateRepo("acme/app")
	if err != nil {
		return err
	}
	if _, err := repo.Commit(benchConfigMap("0"), "v 0"); err != nil {
		return err
	}

	secret := "bench-webhook-secret"
	if err := os.WriteFile(filepath.Join(work, "secret"), []byte(secret), 0o600); err != nil {
		return err
	}
	db := filepath.Join(work, "hub.db")
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	hubURL := "http://" + addr
	step("starting the hub on %s", addr)
	hub := exec.CommandContext(ctx, tetherBin, "hub", "--listen", addr, "--db", db,
		"--webhook-secret-file", filepath.Join(work, "secret"), "--log-level", "error")
	hub.Stdout, hub.Stderr = os.Stderr, os.Stderr
	if err := hub.Start(); err != nil {
		return err
	}
	defer func() { _ = hub.Process.Kill(); _ = hub.Wait() }()
	if err := pollEvery10ms(time.Minute, func() bool {
		resp, err := http.Get(hubURL + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}); err != nil {
		return fmt.Errorf("hub /healthz: %w", err)
	}
	tok, err := exec.Command(tetherBin, "hub", "token", "create", "--db", db, "--agent", "bench").Output()
	if err != nil {
		return fmt.Errorf("token create: %w", err)
	}
	if err := os.WriteFile(filepath.Join(work, "token"), tok, 0o600); err != nil {
		return err
	}
	step("starting the agent")
	agent := exec.CommandContext(ctx, tetherBin, "agent", "--kubeconfig", cp.KubeconfigPath, "--default-service-account", testenv.DeployerAccount,
		"--cache-dir", filepath.Join(work, "cache"), "--leader-elect=false", "--log-level=error",
		"--hub-url", hubURL, "--agent-name", "bench", "--token-file", filepath.Join(work, "token"))
	agent.Stdout, agent.Stderr = os.Stderr, os.Stderr
	if err := agent.Start(); err != nil {
		return err
	}
	defer func() { _ = agent.Process.Kill(); _ = agent.Wait() }()

	k := newKube(cp)
	ns := "webhook-bench"
	if err := k.tenant(ctx, ns); err != nil {
		return err
	}
	gs := &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec: v1alpha1.GitSyncSpec{
			Source:   v1alpha1.GitSource{URL: repo.URL, Ref: v1alpha1.GitRef{Branch: "main"}},
			Path:     "./app",
			Interval: metav1.Duration{Duration: time.Hour},
		},
	}
	if err := k.c.Create(ctx, gs); err != nil {
		return err
	}
	badge := hubURL + "/badge/bench/" + ns + "/app.svg"
	if err := waitValue(ctx, k, ns, "0"); err != nil {
		return err
	}

	var applied, shown []time.Duration
	for i := 1; i <= n; i++ {
		v := fmt.Sprint(i)
		sha, err := repo.Commit(benchConfigMap(v), "v "+v)
		if err != nil {
			return err
		}
		start := time.Now()
		if err := postPush(hubURL, secret, repo.URL, sha); err != nil {
			return err
		}
		if err := waitValue(ctx, k, ns, v); err != nil {
			return err
		}
		applied = append(applied, time.Since(start))
		if err := pollEvery10ms(waitLimit, func() bool { return badgeShows(badge, "synced "+sha[:7]) }); err != nil {
			return fmt.Errorf("badge for %s: %w", sha[:7], err)
		}
		shown = append(shown, time.Since(start))
	}
	fmt.Printf("\nwebhook path on loopback, %d commits (hub and agent are separate processes)\n\n", n)
	fmt.Printf("%-46s %10s %10s %10s %10s\n", "measurement", "p50", "p95", "min", "max")
	for _, r := range []struct {
		what string
		ds   []time.Duration
	}{
		{"commit → webhook → applied in the cluster", applied},
		{"commit → webhook → applied → badge shows sha", shown},
	} {
		fmt.Printf("%-46s %10s %10s %10s %10s\n", r.what, round(median(r.ds)), round(p95(r.ds)), round(minDur(r.ds)), round(maxDur(r.ds)))
	}
	fmt.Println("\nTarget: p50 of commit → applied under 1 s. The timer starts after `git commit`,")
	fmt.Println("before the webhook POST; the cluster is read every 10 ms.")
	return nil
}

func benchConfigMap(v string) map[string]string {
	return map[string]string{"app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  v: \"" + v + "\"\n"}
}

// postPush sends GitHub's push event for sha on main, signed as GitHub
// signs it.
func postPush(hubURL, secret, repoURL, sha string) error {
	body, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "after": sha,
		"repository": map[string]any{"clone_url": repoURL, "default_branch": "main"},
	})
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	req, err := http.NewRequest(http.MethodPost, hubURL+"/hooks/github", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(string(b), `"dispatched":1`) {
		return fmt.Errorf("webhook: %s %s", resp.Status, b)
	}
	return nil
}

// waitValue waits until ConfigMap settings in ns holds v.
func waitValue(ctx context.Context, k *kube, ns, v string) error {
	return pollEvery10ms(waitLimit, func() bool {
		cm := &corev1.ConfigMap{}
		return k.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "settings"}, cm) == nil && cm.Data["v"] == v
	})
}

func badgeShows(url, text string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return bytes.Contains(b, []byte(">"+text+"<"))
}

// pollEvery10ms checks cond every 10 ms until it holds or limit passes.
func pollEvery10ms(limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func minDur(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = min(m, d)
	}
	return m
}

func maxDur(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
