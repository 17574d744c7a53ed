package channel_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hubsrv "tether.dev/tether/hub"
	"tether.dev/tether/hub/store"
)

// TestTunnelKubectl runs the pinned kubectl against a hub that holds no
// kubeconfig: every request travels the agent's channel, and the agent
// makes it as the user its ConfigMap grants, under that user's RBAC.
func TestTunnelKubectl(t *testing.T) {
	r := newTunnelRig(t, rigOptions{})
	ctx := context.Background()
	team := r.namespace("team-a")
	other := r.namespace("team-b")
	r.bind(team, rbacv1.UserKind, "tether:user:alice")
	alice := r.kubeconfig(r.token(store.KindAPI, "alice"))
	bob := r.kubeconfig(r.token(store.KindAPI, "bob"))
	r.setAccess("users:\n- name: alice\n")
	eventuallyRun(t, r, alice, "the agent read its access ConfigMap", "get", "configmaps", "-n", team)

	if _, err := r.kube.CoreV1().ConfigMaps(team).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "app"}, Data: map[string]string{"v": "1"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("get", func(t *testing.T) {
		out := r.mustRun(t, alice, "get", "configmap", "app", "-n", team, "-o", "jsonpath={.data.v}")
		if out != "1" {
			t.Errorf("got %q, want 1", out)
		}
		out = r.mustRun(t, alice, "describe", "configmap", "app", "-n", team)
		if !strings.Contains(out, "Name:") || !strings.Contains(out, "app") {
			t.Errorf("describe: %s", out)
		}
	})

	t.Run("acts as the granted user, whatever the caller asks", func(t *testing.T) {
		// --as sends Impersonate-User; the hub and the agent drop it.
		out := r.mustRun(t, alice, "auth", "whoami", "--as", "system:admin", "--as-group", "system:masters", "-o", "json")
		var review struct {
			Status struct {
				UserInfo struct {
					Username string   `json:"username"`
					Groups   []string `json:"groups"`
				} `json:"userInfo"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &review); err != nil {
			t.Fatalf("whoami: %v: %s", err, out)
		}
		u := review.Status.UserInfo
		if u.Username != "tether:user:alice" || !slices.Contains(u.Groups, "tether:users") || slices.Contains(u.Groups, "system:masters") {
			t.Errorf("the API server saw %+v", u)
		}
	})

	t.Run("refused verb", func(t *testing.T) {
		_, stderr, err := r.run(alice, "delete", "configmap", "app", "-n", team)
		if err == nil || !strings.Contains(stderr, "Forbidden") || !strings.Contains(stderr, `"tether:user:alice" cannot delete`) {
			t.Errorf("delete with a read-only role: err %v, stderr %s", err, stderr)
		}
	})

	t.Run("refused namespace", func(t *testing.T) {
		_, stderr, err := r.run(alice, "get", "configmaps", "-n", other)
		if err == nil || !strings.Contains(stderr, "Forbidden") || !strings.Contains(stderr, `cannot list resource "configmaps"`) {
			t.Errorf("another namespace: err %v, stderr %s", err, stderr)
		}
	})

	t.Run("no entry: 403 from the agent", func(t *testing.T) {
		_, stderr, err := r.run(bob, "get", "configmaps", "-n", team)
		if err == nil || !strings.Contains(stderr, "Forbidden") || !strings.Contains(stderr, `user "bob": refused: not granted`) {
			t.Errorf("bob: err %v, stderr %s", err, stderr)
		}
	})

	t.Run("secrets only where RBAC allows", func(t *testing.T) {
		// The role does not include secrets.
		_, stderr, err := r.run(alice, "get", "secrets", "-n", team)
		if err == nil || !strings.Contains(stderr, "Forbidden") {
			t.Errorf("secrets with a ConfigMap role: err %v, stderr %s", err, stderr)
		}
	})
}

// TestTunnelAccessConfigMap follows the ConfigMap's life: none (403), a
// bad file (403, every grant off), a good one, then gone again.
func TestTunnelAccessConfigMap(t *testing.T) {
	r := newTunnelRig(t, rigOptions{})
	tok := r.token(store.KindAPI, "alice")
	r.bind(r.ns, rbacv1.UserKind, "tether:user:alice")
	path := "/api/v1/namespaces/" + r.ns + "/configmaps"
	want := func(what string, code int, body string) {
		t.Helper()
		eventually(t, what, func() bool {
			got, b := r.proxyGet(tok, path, nil)
			return got == code && strings.Contains(b, body)
		})
	}
	want("no ConfigMap: 403 Status", http.StatusForbidden, `"kind":"Status","message":"user \"alice\": refused: this cluster grants no tunnel access`)
	r.setAccess("users:\n- name: alice\n")
	want("granted", http.StatusOK, `"kind":"ConfigMapList"`)
	r.setAccess("users:\n- name: alice\n  serviceAccount: x/y\n") // users take no serviceAccount
	want("a bad file refuses everything", http.StatusForbidden, "access configuration (ConfigMap "+r.ns+"/tether-access) is invalid")
	r.setAccess("users:\n- name: alice\n")
	want("granted again", http.StatusOK, `"kind":"ConfigMapList"`)
	r.deleteAccess()
	want("deleted: refused", http.StatusForbidden, "grants no tunnel access")
}

// TestTunnelList1000 lists 1,000 ConfigMaps through the tunnel: the answer
// is streamed in windows, and complete.
func TestTunnelList1000(t *testing.T) {
	r := newTunnelRig(t, rigOptions{})
	ns := r.namespace("many")
	r.bind(ns, rbacv1.UserKind, "tether:user:alice")
	kc := r.kubeconfig(r.token(store.KindAPI, "alice"))
	r.setAccess("users:\n- name: alice\n")
	createConfigMaps(t, r, ns, 1000)
	eventuallyRun(t, r, kc, "the agent read its access ConfigMap", "get", "configmaps", "-n", ns)
	out := r.mustRun(t, kc, "get", "configmaps", "-n", ns, "-o", "name", "--chunk-size", "0")
	if n := strings.Count(out, "configmap/cm-"); n != 1000 {
		t.Errorf("listed %d ConfigMaps, want 1000", n)
	}
}

func createConfigMaps(t testing.TB, r *tunnelRig, ns string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	payload := strings.Repeat("x", 512)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := r.kube.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%04d", i), Labels: map[string]string{"app": "bulk"}},
				Data:       map[string]string{"payload": payload},
			}, metav1.CreateOptions{})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// watcher is a running `kubectl get -w`, its output line by line.
type watcher struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan error
	errb  *syncBuffer
}

func startWatch(t testing.TB, r *tunnelRig, kubeconfig string, args ...string) *watcher {
	t.Helper()
	cmd := exec.Command(r.kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Env = []string{"HOME=" + r.dir, "PATH=/usr/bin:/bin"}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{cmd: cmd, lines: make(chan string, 100), done: make(chan error, 1), errb: &syncBuffer{}}
	cmd.Stderr = w.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
		w.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	return w
}

// next waits for the next line (up to 30 s).
func (w *watcher) next(t testing.TB) string {
	t.Helper()
	select {
	case l, ok := <-w.lines:
		if !ok {
			t.Fatalf("kubectl ended: %s", w.errb.String())
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("no line from kubectl within 30 s; stderr: %s", w.errb.String())
	}
	return ""
}

// ended waits for kubectl to exit (up to 30 s) and returns its error.
func (w *watcher) ended(t testing.TB) error {
	t.Helper()
	for {
		select {
		case _, ok := <-w.lines:
			if ok {
				continue
			}
			return <-w.done
		case <-time.After(30 * time.Second):
			t.Fatalf("kubectl still running after 30 s; stderr: %s", w.errb.String())
		}
	}
}

// TestTunnelWatch: `kubectl get -w` through the tunnel sees a change; a
// revoked token ends the watch; the agent restarting ends a watch with an
// error, and the next request (after a clear 503 while it is away)
// succeeds.
func TestTunnelWatch(t *testing.T) {
	r := newTunnelRig(t, rigOptions{proxyRecheck: 200 * time.Millisecond})
	ctx := context.Background()
	ns := r.namespace("watch")
	r.bind(ns, rbacv1.UserKind, "tether:user:alice")
	r.bind(ns, rbacv1.UserKind, "tether:user:carol")
	aliceTok := r.token(store.KindAPI, "alice")
	alice := r.kubeconfig(aliceTok)
	carolTok := r.token(store.KindAPI, "carol")
	carol := r.kubeconfig(carolTok)
	r.setAccess("users:\n- name: alice\n- name: carol\n")
	if _, err := r.kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "w"}, Data: map[string]string{"v": "1"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventuallyRun(t, r, alice, "the agent read its access ConfigMap", "get", "configmap", "w", "-n", ns)
	update := func(v string) {
		t.Helper()
		cm, err := r.kube.CoreV1().ConfigMaps(ns).Get(ctx, "w", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["v"] = v
		if _, err := r.kube.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A list watch: it starts at the list's resourceVersion, so a change
	// made before the watch request arrives is still seen. (`get
	// configmap w -w` watches from "0" and drops the first event, which
	// loses such a change even without the tunnel.) -v=6 logs each
	// request to stderr, which a failure shows.
	watchArgs := []string{"get", "configmaps", "-n", ns, "--field-selector", "metadata.name=w", "-w",
		"-o", "custom-columns=V:.data.v", "--no-headers", "-v=6"}

	t.Run("sees a change", func(t *testing.T) {
		w := startWatch(t, r, alice, watchArgs...)
		if l := w.next(t); l != "1" {
			t.Fatalf("first line %q", l)
		}
		update("2")
		if l := w.next(t); l != "2" {
			t.Fatalf("after the change: %q", l)
		}
	})

	t.Run("revoked token ends the watch", func(t *testing.T) {
		w := startWatch(t, r, carol, watchArgs...)
		w.next(t)
		update("3")
		if l := w.next(t); l != "3" {
			t.Fatalf("after the change: %q", l)
		}
		if _, err := r.hub.Store().RevokeTokens(ctx, store.KindAPI, "carol"); err != nil {
			t.Fatal(err)
		}
		w.ended(t)
		if code, _ := r.proxyGet(carolTok, "/api/v1/namespaces/"+ns+"/configmaps", nil); code != http.StatusUnauthorized {
			t.Errorf("revoked token: %d, want 401", code)
		}
	})

	t.Run("agent restarts mid-request", func(t *testing.T) {
		resp := r.proxyOpen(aliceTok, "/api/v1/namespaces/"+ns+"/configmaps?watch=true&fieldSelector=metadata.name%3Dw", nil)
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("watch: %d", resp.StatusCode)
		}
		events := bufio.NewReader(resp.Body)
		if _, err := events.ReadString('\n'); err != nil {
			t.Fatalf("first event: %v", err)
		}
		r.stopAgent()
		// The answer breaks off with an error: never a clean end that
		// kubectl would take for a finished watch.
		rest, err := io.ReadAll(events)
		if err == nil {
			t.Errorf("the watch ended cleanly when the agent went away (read %q)", rest)
		}
		_, stderr, err := r.run(alice, "get", "configmap", "w", "-n", ns)
		if err == nil || !strings.Contains(stderr, "agent prod is not connected to the hub") {
			t.Errorf("while the agent is away: err %v, stderr %s", err, stderr)
		}
		r.startAgent(true, testLogger(t, nil))
		eventually(t, "the agent is back", func() bool { return len(r.ch.ConnectedAgents()) == 1 })
		eventuallyRun(t, r, alice, "a retry succeeds", "get", "configmap", "w", "-n", ns)
	})
}

// TestTunnelProjects: a scoped project token (through the Principals
// interface the hub's scoped tokens plug into) acts as the project's
// service account; a token without the proxy action is refused by the hub.
func TestTunnelProjects(t *testing.T) {
	p := fakePrincipals{
		"billing-token": {Kind: hubsrv.KindProject, Name: "billing", Actions: []hubsrv.Action{hubsrv.ActionProxy}},
		"shop-token":    {Kind: hubsrv.KindProject, Name: "shop", Actions: []hubsrv.Action{hubsrv.ActionProxy}},
		"reader-token":  {Kind: hubsrv.KindProject, Name: "billing", Actions: []hubsrv.Action{hubsrv.ActionRead}},
	}
	r := newTunnelRig(t, rigOptions{principals: p})
	billing := r.namespace("billing")
	r.bind(billing, rbacv1.ServiceAccountKind, billing+"/deployer")
	r.setAccess(fmt.Sprintf("projects:\n- name: shop\n- name: billing\n  serviceAccount: %s/deployer\n", billing))
	kc := r.kubeconfig("billing-token")
	eventuallyRun(t, r, kc, "the agent read its access ConfigMap", "get", "configmaps", "-n", billing)
	out := r.mustRun(t, kc, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
	if out != "system:serviceaccount:"+billing+":deployer" {
		t.Errorf("billing acts as %q", out)
	}
	out = r.mustRun(t, r.kubeconfig("shop-token"), "auth", "whoami", "-o", `jsonpath={.status.userInfo.username} {.status.userInfo.groups}`)
	if !strings.HasPrefix(out, "tether:project:shop ") || !strings.Contains(out, "tether:projects") {
		t.Errorf("shop acts as %q", out)
	}
	if code, body := r.proxyGet("reader-token", "/api", nil); code != http.StatusForbidden || !strings.Contains(body, "lacks the proxy action") {
		t.Errorf("a token without proxy: %d %s", code, body)
	}
	if code, _ := r.proxyGet("", "/api", nil); code != http.StatusUnauthorized {
		t.Errorf("no token: %d", code)
	}
}

// TestTunnelOldAgent: an agent without the tunnel keeps reporting, and the
// proxy says it cannot serve.
func TestTunnelOldAgent(t *testing.T) {
	r := newTunnelRig(t, rigOptions{noTunnel: true})
	code, body := r.proxyGet(r.token(store.KindAPI, "alice"), "/api", nil)
	if code != http.StatusNotImplemented || !strings.Contains(body, "does not serve the Kubernetes API tunnel") {
		t.Errorf("old agent: %d %s", code, body)
	}
}

type fakePrincipals map[string]hubsrv.Principal

func (f fakePrincipals) Principal(_ context.Context, token string) (hubsrv.Principal, error) {
	p, ok := f[token]
	if !ok {
		return hubsrv.Principal{}, store.ErrInvalidToken
	}
	return p, nil
}

// eventuallyRun retries a kubectl command until it succeeds (up to 20 s).
func eventuallyRun(t testing.TB, r *tunnelRig, kubeconfig, what string, args ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, stderr, err := r.run(kubeconfig, args...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s: %v: %s", what, err, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
