package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/channel/tunnel"
	"tether.dev/tether/internal/testenv"
)

// TestTunnelKubectlThroughNetns runs the real `tether hub` in a network
// namespace that can open no connection at all (so it cannot reach the
// API server, which listens on the host's loopback anyway) and has no
// kubeconfig, and the pinned kubectl on the host against the kubeconfig
// `tether hub kubeconfig` prints. Every request reaches the cluster over
// the stream the agent opened, as the identity the agent's ConfigMap
// grants.
// The agent is the real `tether agent` process.
func TestTunnelKubectlThroughNetns(t *testing.T) {
	n := newNetns(t)
	n.dropNewOutgoing(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", suite.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	apiURL, _ := url.Parse(cfg.Host)
	if n.canDial(apiURL.Host) {
		t.Fatalf("the hub's namespace reaches the API server at %s", apiURL.Host)
	}

	dir := t.TempDir()
	certFile, keyFile, caFile := tunnelCert(t, dir, n.nsIP)
	h := startTLSHub(t, dir, n, certFile, keyFile)
	agentTokFile := h.token(t, "prod.token", "--agent", "prod")
	aliceTokFile := h.token(t, "alice.token", "--api", "--name", "alice")

	// The cluster owner's side: an agent namespace with the grant, and
	// RBAC for the granted user in one namespace.
	agentNS := newNamespace(t, "tunnel-agent")
	appNS := newNamespace(t, "tunnel-app")
	mustCreate(t, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read-configmaps", Namespace: appNS},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}}})
	mustCreate(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "alice-reads", Namespace: appNS},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "read-configmaps"},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "tether:user:alice"}}})
	mustCreate(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: tunnel.AccessConfigMap, Namespace: agentNS},
		Data: map[string]string{tunnel.AccessKey: "users:\n- name: alice\n"}})
	mustCreate(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: appNS}, Data: map[string]string{"v": "1"}})

	// The real `tether agent`, on the host (it reaches the API server and
	// dials out to the hub in the namespace), serving the tunnel as the
	// ConfigMap in its --namespace grants.
	startAgent(t, dir, h.url, "prod", agentTokFile, "--namespace", agentNS, "--ca-file", caFile)

	kubeconfig := filepath.Join(dir, "alice.kubeconfig")
	writeFile(t, kubeconfig, mustRun(t, suite.tether, "hub", "kubeconfig", "--hub-url", h.url, "--agent", "prod",
		"--token-file", aliceTokFile, "--ca-file", caFile))
	kubectl := func(args ...string) (string, error) {
		return run(append([]string{kubectlBin(t), "--kubeconfig", kubeconfig, "--request-timeout", "60s"}, args...)...)
	}
	eventually(t, time.Minute, "kubectl get through the hub", func() (bool, string) {
		out, err := kubectl("get", "configmap", "app", "-n", appNS, "-o", "jsonpath={.data.v}")
		return err == nil && out == "1", fmt.Sprint(out, err)
	})
	if out, err := kubectl("get", "configmaps", "-n", agentNS); err == nil || !strings.Contains(out, `User "tether:user:alice" cannot list resource "configmaps"`) {
		t.Errorf("a namespace alice has no RBAC in: %v %s", err, out)
	}
	if out, err := kubectl("delete", "configmap", "app", "-n", appNS); err == nil || !strings.Contains(out, "Forbidden") {
		t.Errorf("a verb alice has no RBAC for: %v %s", err, out)
	}
	if out, err := kubectl("auth", "whoami", "--as", "system:admin", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != "tether:user:alice" {
		t.Errorf("whoami through the hub: %v %q", err, out)
	}
	if n.canDial(apiURL.Host) {
		t.Fatalf("the hub's namespace reaches the API server at the end of the test")
	}
}

// kubectlBin is the pinned kubectl of the test binaries, never PATH's.
func kubectlBin(t *testing.T) string {
	t.Helper()
	dir, err := testenv.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "kubectl")
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := suite.k8s.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
}

// startTLSHub starts `tether hub` over HTTPS inside the namespace, without
// a KUBECONFIG in its environment.
func startTLSHub(t *testing.T, dir string, n *netns, certFile, keyFile string) *hubProc {
	t.Helper()
	h := &hubProc{dir: dir, db: filepath.Join(dir, "hub.db")}
	h.argv = append(n.exec(), suite.tether, "hub", "--db", h.db, "--shutdown-timeout", "5s",
		"--tls-cert", certFile, "--tls-key", keyFile, "--listen", n.nsIP+":0")
	h.proc = startProc(t, dir, "hub", h.argv, func(c *exec.Cmd) {
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "KUBECONFIG=") {
				c.Env = append(c.Env, kv)
			}
		}
	})
	serving := regexp.MustCompile(`msg="hub serving" address=(\S+)`)
	eventually(t, time.Minute, "the hub to say where it serves", func() (bool, string) {
		if !h.running() {
			t.Fatalf("the hub exited: %v", h.waitErr)
		}
		m := serving.FindStringSubmatch(h.log())
		if m == nil {
			return false, "no 'hub serving' line yet"
		}
		h.url = m[1]
		return true, ""
	})
	if !strings.HasPrefix(h.url, "https://"+n.nsIP+":") {
		t.Fatalf("hub serves on %s", h.url)
	}
	return h
}

// tunnelCert writes a self-signed certificate for ip, its key, and the
// same certificate as the CA file.
func tunnelCert(t *testing.T, dir, ip string) (certFile, keyFile, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tether hub e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile = filepath.Join(dir, "hub.crt"), filepath.Join(dir, "hub.key"), filepath.Join(dir, "ca.crt")
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, certFile, certPEM)
	writeFile(t, caFile, certPEM)
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	return certFile, keyFile, caFile
}
