package channel_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"tether.dev/tether/channel/agent"
	"tether.dev/tether/channel/server"
	"tether.dev/tether/channel/tunnel"
	hubsrv "tether.dev/tether/hub"
	"tether.dev/tether/hub/store"
	"tether.dev/tether/internal/testenv"
)

// One control plane for the package's tunnel tests, started by the first
// test that needs it and stopped by TestMain.
var (
	cpOnce sync.Once
	cp     *testenv.ControlPlane
	cpErr  error
)

func controlPlane(t testing.TB) *testenv.ControlPlane {
	t.Helper()
	cpOnce.Do(func() { cp, cpErr = testenv.StartControlPlane(testenv.ControlPlaneOptions{}) })
	if cpErr != nil {
		t.Fatal(cpErr)
	}
	return cp
}

func stopControlPlane() {
	if cp != nil {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop control plane:", err)
		}
	}
}

// kubectlPath is the pinned kubectl of the test binaries, never PATH's.
func kubectlPath(t testing.TB) string {
	t.Helper()
	dir, err := testenv.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "kubectl")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no kubectl in %s: %v", dir, err)
	}
	return p
}

// tunnelRig is a hub (the real hub.Server behind the channel server, on a
// loopback port; it holds no kubeconfig and never dials the API server)
// and an agent whose tunnel reaches the control plane.
type tunnelRig struct {
	t         testing.TB
	hub       *hubsrv.Server
	ch        *server.Server
	url       string
	agentName string
	agentTok  string
	ns        string // the agent's namespace, holding tether-access
	kube      kubernetes.Interface
	kubectl   string
	dir       string
	ca        []byte

	mu        sync.Mutex
	stopAgent func()
	tun       *tunnel.Agent
	objects   tunnel.ObjectsFunc
}

type rigOptions struct {
	principals   hubsrv.Principals
	noTunnel     bool // an agent from before the tunnel
	proxyRecheck time.Duration
	quiet        bool
	// externalAgent: the caller runs the agent (startAgentProcess).
	externalAgent bool
	// objects is the agent's watch cache view (GitSync pages).
	objects tunnel.ObjectsFunc
}

func newTunnelRig(t testing.TB, o rigOptions) *tunnelRig {
	t.Helper()
	c := controlPlane(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if !o.quiet {
		log = testLogger(t, nil)
	}
	srv, err := hubsrv.New(context.Background(), hubsrv.Options{
		DB: filepath.Join(t.TempDir(), "hub.db"), Log: log, Principals: o.principals, ProxyRecheck: o.proxyRecheck,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ch := server.NewServer(server.ServerOptions{Authenticator: srv, Sink: srv, Fallback: srv.Handler(), Logger: log})
	srv.SetDispatcher(ch)
	srv.SetTunnels(ch)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// TLS, as kubectl sends a bearer token only over https.
	tlsConf, caPEM := selfSigned(t)
	hs := ch.HTTPServer(tlsConf)
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ch.Stop(ctx)
		_ = hs.Shutdown(ctx)
	})
	kube, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	r := &tunnelRig{
		t: t, hub: srv, ch: ch, url: "https://" + ln.Addr().String(), agentName: "prod", ca: caPEM,
		kube: kube, kubectl: kubectlPath(t), dir: t.TempDir(),
	}
	r.ns = r.namespace("tether-system")
	r.agentTok = r.token(store.KindAgent, r.agentName)
	if o.externalAgent {
		return r
	}
	r.objects = o.objects
	r.startAgent(!o.noTunnel, log)
	eventually(t, "the agent is connected", func() bool { return len(ch.ConnectedAgents()) == 1 })
	return r
}

// startAgent runs the agent's channel client (with the tunnel unless
// noTunnel) until stopAgent or the test's end.
func (r *tunnelRig) startAgent(withTunnel bool, log *slog.Logger) {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts := agent.Options{
		HubURL: r.url, AgentName: r.agentName, Token: r.agentTok, Logger: log, CAData: r.ca,
		Backoff: agent.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond},
	}
	var wg sync.WaitGroup
	if withTunnel {
		tun, err := tunnel.NewAgent(tunnel.AgentOptions{Config: controlPlane(r.t).Config, Namespace: r.ns, Logger: log, Objects: r.objects})
		if err != nil {
			r.t.Fatal(err)
		}
		opts.Tunnel = tun
		r.mu.Lock()
		r.tun = tun
		r.mu.Unlock()
		wg.Go(func() { _ = tun.Run(ctx) })
	}
	c, err := agent.New(opts)
	if err != nil {
		r.t.Fatal(err)
	}
	wg.Go(func() { _ = c.Run(ctx) })
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	r.mu.Lock()
	r.stopAgent = stop
	r.mu.Unlock()
	r.t.Cleanup(stop)
}

// namespace creates a namespace with a fresh name.
func (r *tunnelRig) namespace(prefix string) string {
	r.t.Helper()
	ns, err := r.kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	return ns.Name
}

// token creates a hub token.
func (r *tunnelRig) token(kind, name string) string {
	r.t.Helper()
	tok, err := r.hub.Store().CreateToken(context.Background(), kind, name)
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

// grant writes the agent's access.yaml and waits until the agent uses it
// (a request of the probe caller stops being refused by the agent, or,
// when the file is bad, until its error shows).
func (r *tunnelRig) setAccess(yaml string) {
	r.t.Helper()
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: tunnel.AccessConfigMap, Namespace: r.ns},
		Data: map[string]string{tunnel.AccessKey: yaml}}
	_, err := r.kube.CoreV1().ConfigMaps(r.ns).Update(ctx, cm, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = r.kube.CoreV1().ConfigMaps(r.ns).Create(ctx, cm, metav1.CreateOptions{})
	}
	if err != nil {
		r.t.Fatal(err)
	}
}

// deleteAccess removes the ConfigMap.
func (r *tunnelRig) deleteAccess() {
	r.t.Helper()
	err := r.kube.CoreV1().ConfigMaps(r.ns).Delete(context.Background(), tunnel.AccessConfigMap, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		r.t.Fatal(err)
	}
}

// readRole is a ClusterRole that reads ConfigMaps and events (for
// describe) and nothing else. The
// built-in "view" is aggregated by kube-controller-manager, which these
// tests do not run, so its rules would be empty.
const readRole = "tether-test-read-configmaps"

// bind lets subject (a user, or a service account "ns/name") read
// ConfigMaps in namespace ns, and nothing more.
func (r *tunnelRig) bind(ns, kind, subject string) {
	r.t.Helper()
	_, err := r.kube.RbacV1().ClusterRoles().Create(context.Background(), &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: readRole},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps", "events"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		r.t.Fatal(err)
	}
	clusterRole := readRole
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "tunnel-", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{Kind: kind, Name: subject}},
	}
	if kind == rbacv1.ServiceAccountKind {
		ns, name, _ := strings.Cut(subject, "/")
		rb.Subjects = []rbacv1.Subject{{Kind: kind, Name: name, Namespace: ns}}
	} else {
		rb.Subjects[0].APIGroup = "rbac.authorization.k8s.io"
	}
	if _, err := r.kube.RbacV1().RoleBindings(ns).Create(context.Background(), rb, metav1.CreateOptions{}); err != nil {
		r.t.Fatal(err)
	}
}

// kubeconfig writes a kubeconfig for the hub's proxy of the agent, as
// `tether hub kubeconfig` prints it.
func (r *tunnelRig) kubeconfig(token string) string {
	r.t.Helper()
	f, err := os.CreateTemp(r.dir, "kubeconfig-")
	if err != nil {
		r.t.Fatal(err)
	}
	fmt.Fprintf(f, `apiVersion: v1
kind: Config
clusters:
- name: hub
  cluster:
    server: %s/k8s-proxy/%s
    certificate-authority-data: %s
users:
- name: me
  user:
    token: %s
contexts:
- name: hub
  context: {cluster: hub, user: me}
current-context: hub
`, r.url, r.agentName, base64.StdEncoding.EncodeToString(r.ca), token)
	f.Close()
	return f.Name()
}

// run runs kubectl with kubeconfig and returns stdout, stderr and the error.
func (r *tunnelRig) run(kubeconfig string, args ...string) (string, string, error) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.kubectl, append([]string{"--kubeconfig", kubeconfig, "--request-timeout", "60s"}, args...)...)
	cmd.Env = []string{"HOME=" + r.dir, "PATH=/usr/bin:/bin"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// mustRun runs kubectl and fails t (the test or subtest) when it fails.
func (r *tunnelRig) mustRun(t testing.TB, kubeconfig string, args ...string) string {
	t.Helper()
	out, stderr, err := r.run(kubeconfig, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// proxyGet makes one raw request through the hub's proxy and reads the
// whole answer.
func (r *tunnelRig) proxyGet(token, path string, header http.Header) (int, string) {
	r.t.Helper()
	resp := r.proxyOpen(token, path, header)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// proxyOpen starts one raw request through the hub's proxy; the caller
// reads and closes the body.
func (r *tunnelRig) proxyOpen(token, path string, header http.Header) *http.Response {
	r.t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.url+"/k8s-proxy/"+r.agentName+path, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.ca)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	resp, err := c.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp
}
