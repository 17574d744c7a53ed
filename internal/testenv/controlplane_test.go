package testenv

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestAPIServerRestart stops kube-apiserver and starts it again, as the
// fault tests do: requests fail while it is away; afterwards the same
// kubeconfig works against the same port, the data in etcd is still
// there, and the audit log names the user who wrote it.
func TestAPIServerRestart(t *testing.T) {
	cp, err := StartControlPlane(ControlPlaneOptions{WithoutCRDs: true, Audit: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	kubeconfig, err := cp.AddUser("writer", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 10 * time.Second
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := Context(t, 2*time.Minute)
	ns := NewNamespace(t, c, "restart")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kept"}, Data: map[string]string{"v": "1"}}
	if err := c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}

	if err := cp.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{}); err == nil {
		t.Fatal("a request succeeded while the API server was stopped")
	}
	if err := cp.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	got := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(cm), got); err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if got.Data["v"] != "1" {
		t.Fatalf("after the restart the ConfigMap holds %v", got.Data)
	}

	events, err := cp.Audit()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, e := range events {
		if e.Verb == "create" && e.Changed() && e.ObjectRef != nil && e.ObjectRef.Resource == "configmaps" &&
			e.ObjectRef.Namespace == ns && e.ObjectRef.Name == "kept" {
			found = found || e.User.Username == "writer"
		}
	}
	if !found {
		t.Fatalf("no audit event of writer creating %s/kept among %d events", ns, len(events))
	}
	if _, err := (&ControlPlane{}).Audit(); err == nil {
		t.Fatalf("Audit without ControlPlaneOptions.Audit: %v, want an error", err)
	}
}
