package channel_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/hub/store"
)

// kubeletStandIn is the one kubelet endpoint `kubectl logs -f` needs: an
// HTTPS server on 127.0.0.1 that serves
// /containerLogs/{ns}/{pod}/{container}. There is no real kubelet here
// (no container runtime): the API server proxies the log request to the
// node's address and kubelet port exactly as it would to a kubelet, and
// does not verify the kubelet's certificate because the test API server
// runs without --kubelet-certificate-authority.
type kubeletStandIn struct {
	srv   *httptest.Server
	lines chan string   // each is written and flushed as one log line
	open  chan string   // the path of each follow request, when it arrives
	ended chan struct{} // closed when a follow request's client went away
	once  sync.Once
}

func startKubeletStandIn(t *testing.T) *kubeletStandIn {
	k := &kubeletStandIn{lines: make(chan string), open: make(chan string, 1), ended: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("follow") != "true" {
			http.Error(w, "the stand-in serves follow=true only", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		k.open <- r.URL.Path
		for {
			select {
			case l := <-k.lines:
				fmt.Fprintln(w, l)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				k.once.Do(func() { close(k.ended) })
				return
			}
		}
	})
	k.srv = httptest.NewTLSServer(mux) // on 127.0.0.1
	t.Cleanup(func() {
		// Close waits for open requests: a follow the API server never
		// ended (the failure this test looks for) is cut first.
		k.srv.CloseClientConnections()
		k.srv.Close()
	})
	return k
}

// TestTunnelLogsFollow: `kubectl logs -f` through the hub's tunnel. The
// API server proxies the log to a kubelet stand-in (a Node whose address
// and kubelet port are the stand-in's, a Pod bound to it); lines written
// while the stream is open reach kubectl one by one, and ending kubectl
// ends the stream all the way down: the stand-in sees its client go, and
// the hub's tunnel has no stream left.
func TestTunnelLogsFollow(t *testing.T) {
	r := newTunnelRig(t, rigOptions{})
	ctx := context.Background()
	k := startKubeletStandIn(t)
	_, portText, _ := net.SplitHostPort(k.srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portText)

	node, err := r.kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{GenerateName: "standin-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.kube.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{}) })
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	if _, err := r.kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	ns := r.namespace("logs")
	// No kube-controller-manager runs here: the ServiceAccount admission
	// plugin wants the namespace's default account to exist.
	if _, err := r.kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	no := false
	if _, err := r.kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{NodeName: node.Name, AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.kube.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "logs"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}, Verbs: []string{"get", "list"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "logs"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "logs"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "tether:user:alice"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r.setAccess("users:\n- name: alice\n")
	alice := r.kubeconfig(r.token(store.KindAPI, "alice"))
	eventuallyRun(t, r, alice, "alice may get the pod", "get", "-n", ns, "pod/web")

	w := startWatch(t, r, alice, "logs", "-f", "-n", ns, "pod/web", "-c", "web")
	select {
	case p := <-k.open:
		if p != "/containerLogs/"+ns+"/web/web" {
			t.Errorf("the stand-in was asked for %s", p)
		}
	case <-w.done:
		t.Fatalf("kubectl logs ended before the API server reached the stand-in: %s", w.errb.String())
	}
	for i := range 3 {
		want := fmt.Sprintf("line %d of a followed log", i)
		k.lines <- want
		if got := w.next(t); got != want {
			t.Fatalf("kubectl printed %q, want %q", got, want)
		}
	}
	m, err := r.ch.Tunnel(r.agentName)
	if err != nil {
		t.Fatal(err)
	}
	if n := m.Len(); n != 1 {
		t.Errorf("%d tunnel streams open with kubectl logs -f running, want 1", n)
	}
	// Ending kubectl ends the stream down to the kubelet.
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-k.ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the kubelet stand-in's follow request is still open 30 s after kubectl ended")
	}
	eventually(t, "no tunnel stream left", func() bool { return m.Len() == 0 })
}
