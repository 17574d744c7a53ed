package channel_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"tether.dev/tether/channel/agent"
	"tether.dev/tether/channel/tunnel"
	"tether.dev/tether/channel/tunnel/measure"
	"tether.dev/tether/hub/store"
)

// newAPIClients are two ways to the same API server path as the same
// identity (tunnel/measure): through the hub's tunnel, and straight to
// the API server with the impersonation headers the agent would add.
func newAPIClients(b *testing.B, r *tunnelRig, token string) *measure.Clients {
	b.Helper()
	c, err := measure.New(measure.Options{
		ProxyURL: r.url + "/k8s-proxy/" + r.agentName, HubCA: r.ca, Token: token,
		Direct: controlPlane(b).Config, User: "tether:user:alice", Groups: []string{"tether:users"},
	})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// timed runs one request and returns its duration.
func timed(b *testing.B, c *measure.Clients, viaTunnel bool, path string) time.Duration {
	d, err := c.Time(context.Background(), viaTunnel, path)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchRig is a rig with a granted user alice who may read ConfigMaps in
// namespace ns.
func benchRig(b *testing.B, o rigOptions) (*tunnelRig, string, string) {
	o.quiet = true
	r := newTunnelRig(b, o)
	ns := r.namespace("bench")
	r.bind(ns, rbacv1.UserKind, "tether:user:alice")
	tok := r.token(store.KindAPI, "alice")
	r.setAccess("users:\n- name: alice\n")
	return r, ns, tok
}

// BenchmarkTunnelGet: a `kubectl get`-sized request (one ConfigMap)
// through the hub's tunnel and straight to the API server, alternately in
// one run; p50 and p95 of each and the p50 overhead.
func BenchmarkTunnelGet(b *testing.B) {
	r, ns, tok := benchRig(b, rigOptions{})
	if _, err := r.kube.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "app"}, Data: map[string]string{"v": strings.Repeat("x", 512)},
	}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	c := newAPIClients(b, r, tok)
	path := "/api/v1/namespaces/" + ns + "/configmaps/app"
	eventually(b, "granted", func() bool {
		code, _ := r.proxyGet(tok, path, nil)
		return code == http.StatusOK
	})
	if _, _, err := c.Alternate(context.Background(), path, 50, 0); err != nil { // warm connections and caches
		b.Fatal(err)
	}
	var viaTunnel, direct []time.Duration
	for b.Loop() {
		viaTunnel = append(viaTunnel, timed(b, c, true, path))
		direct = append(direct, timed(b, c, false, path))
	}
	b.ReportMetric(ms(measure.Percentile(viaTunnel, 0.5)), "tunnel-p50-ms")
	b.ReportMetric(ms(measure.Percentile(viaTunnel, 0.95)), "tunnel-p95-ms")
	b.ReportMetric(ms(measure.Percentile(direct, 0.5)), "direct-p50-ms")
	b.ReportMetric(ms(measure.Percentile(direct, 0.95)), "direct-p95-ms")
	b.ReportMetric(ms(measure.Percentile(viaTunnel, 0.5)-measure.Percentile(direct, 0.5)), "p50-overhead-ms")
}

// BenchmarkTunnelList1000: a list of 1,000 ConfigMaps (about 0.8 MB of
// JSON) through the tunnel and direct, alternately; the ratio of medians.
func BenchmarkTunnelList1000(b *testing.B) {
	r, ns, tok := benchRig(b, rigOptions{})
	createConfigMaps(b, r, ns, 1000)
	c := newAPIClients(b, r, tok)
	path := "/api/v1/namespaces/" + ns + "/configmaps"
	eventually(b, "granted", func() bool {
		code, _ := r.proxyGet(tok, path+"?limit=1", nil)
		return code == http.StatusOK
	})
	size, err := c.Get(context.Background(), true, path)
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := c.Alternate(context.Background(), path, 5, 0); err != nil {
		b.Fatal(err)
	}
	var viaTunnel, direct []time.Duration
	for b.Loop() {
		viaTunnel = append(viaTunnel, timed(b, c, true, path))
		direct = append(direct, timed(b, c, false, path))
	}
	t50, d50 := measure.Percentile(viaTunnel, 0.5), measure.Percentile(direct, 0.5)
	b.ReportMetric(ms(t50), "tunnel-p50-ms")
	b.ReportMetric(ms(d50), "direct-p50-ms")
	b.ReportMetric(float64(t50)/float64(d50), "tunnel/direct")
	b.ReportMetric(float64(size), "bytes")
}

// BenchmarkTunnelWatchMemory opens 100 watches through the tunnel to an
// agent in its own process, and reports the hub's heap per open watch
// (this process's growth, less what the same 100 watches cost a client
// going direct) and the agent's heap with those 100 concurrent requests.
// It measures once; run it with -benchtime=1x.
func BenchmarkTunnelWatchMemory(b *testing.B) {
	const n = 100
	r, ns, tok := benchRig(b, rigOptions{externalAgent: true})
	agentMem := r.startAgentProcess(b)
	c := newAPIClients(b, r, tok)
	path := "/api/v1/namespaces/" + ns + "/configmaps?watch=true"
	eventually(b, "granted", func() bool {
		code, _ := r.proxyGet(tok, "/api/v1/namespaces/"+ns+"/configmaps", nil)
		return code == http.StatusOK
	})
	for b.Loop() {
		inProcess := func() (int64, error) { return heapInUse(), nil }
		agentHeap := func() (int64, error) { return agentMem(), nil }
		m, err := c.Watches(context.Background(), path, n, inProcess, agentHeap, true)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(m.HubPerWatch, "hub-heap-B/watch")
		b.ReportMetric(m.AgentPerRequest, "agent-heap-B/request")
		b.ReportMetric(float64(m.AgentWith)/(1<<20), "agent-heap-MiB@100")
	}
}

// The agent's own process for the memory benchmark (see TestMain).
const tunnelAgentEnv = "TETHER_BENCH_TUNNEL_AGENT"

// startAgentProcess runs the rig's agent in a child process and returns
// a function that asks it for its heap in use (after a GC).
func (r *tunnelRig) startAgentProcess(b *testing.B) func() int64 {
	b.Helper()
	caFile := filepath.Join(r.dir, "hub-ca.pem")
	if err := os.WriteFile(caFile, r.ca, 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), tunnelAgentEnv+"="+strings.Join([]string{
		r.url, r.agentName, r.agentTok, caFile, controlPlane(b).KubeconfigPath, r.ns}, "\n"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	lines := bufio.NewReader(stdout)
	if l, err := lines.ReadString('\n'); err != nil || strings.TrimSpace(l) != "ready" {
		b.Fatalf("agent process: %q %v", l, err)
	}
	eventually(b, "the agent process is connected", func() bool { return len(r.ch.ConnectedAgents()) == 1 })
	return func() int64 {
		fmt.Fprintln(stdin, "mem")
		l, err := lines.ReadString('\n')
		if err != nil {
			b.Fatalf("agent process: %v", err)
		}
		v, err := strconv.ParseInt(strings.TrimSpace(l), 10, 64)
		if err != nil {
			b.Fatalf("agent process said %q", l)
		}
		return v
	}
}

// runTunnelAgent is the child process: an agent with the tunnel, which
// answers "mem" on stdin with its heap in use and stops when stdin closes.
func runTunnelAgent(spec string) error {
	f := strings.Split(spec, "\n")
	if len(f) != 6 {
		return fmt.Errorf("bad spec %q", spec)
	}
	hubURL, name, token, caFile, kubeconfig, ns := f[0], f[1], f[2], f[3], f[4], f[5]
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tun, err := tunnel.NewAgent(tunnel.AgentOptions{Config: cfg, Namespace: ns, Logger: discard})
	if err != nil {
		return err
	}
	go tun.Run(ctx)
	c, err := agent.New(agent.Options{HubURL: hubURL, AgentName: name, Token: token, CAFile: caFile, Tunnel: tun, Logger: discard})
	if err != nil {
		return err
	}
	go c.Run(ctx)
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "mem" {
			fmt.Println(heapInUse())
		}
	}
	return nil
}
