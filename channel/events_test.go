package channel_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"tether.dev/tether/channel/agent"
	"tether.dev/tether/channel/events"
	"tether.dev/tether/channel/server"
	hubsrv "tether.dev/tether/hub"
	"tether.dev/tether/hub/store"
)

// podsOf says the Pods named "<gitsync>-..." in ns belong to GitSync
// <ns>/<gitsync>: the agent wires the drift tracker here instead.
type podsOf struct{ ns string }

func (o podsOf) OwnerOf(kind, namespace, name string) (string, string, bool) {
	gs, _, ok := strings.Cut(name, "-")
	if kind != "Pod" || namespace != o.ns || !ok {
		return "", "", false
	}
	return o.ns, gs, true
}

// A Warning event of a managed object, created in a real API server,
// reaches the hub's API through the agent's channel, and the GitSync's
// next report carries the count.
func TestWarningEventReachesTheHub(t *testing.T) {
	c := controlPlane(t)
	log := testLogger(t, nil)
	srv, err := hubsrv.New(context.Background(), hubsrv.Options{DB: filepath.Join(t.TempDir(), "hub.db"), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ch := server.NewServer(server.ServerOptions{Authenticator: srv, Sink: srv, Fallback: srv.Handler(), Logger: log})
	srv.SetDispatcher(ch)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := ch.HTTPServer(nil)
	go hs.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ch.Stop(ctx)
		hs.Shutdown(ctx)
	})
	base := "http://" + ln.Addr().String()
	ctx := context.Background()
	agentTok, _ := srv.Store().CreateToken(ctx, store.KindAgent, "prod")
	apiTok, _ := srv.Store().CreateToken(ctx, store.KindAPI, "ops")

	kube, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	nsObj, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "shop-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns := nsObj.Name

	client, err := agent.New(agent.Options{HubURL: base, AgentName: "prod", Token: agentTok, Logger: log,
		Backoff: agent.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	col, err := events.New(events.Options{Client: kube, Owners: podsOf{ns}, Sender: client, Flush: 50 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	client.CountWarnings(col)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { client.Run(runCtx); done <- struct{}{} }()
	go func() { col.Run(runCtx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	send(client, gitSync(ns, "web", sha))
	eventually(t, "the hub has the GitSync", func() bool {
		_, err := srv.Store().GitSync(ctx, "prod", ns, "web")
		return err == nil
	})

	now := metav1.Now()
	if _, err := kube.CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: ns, Name: "web-7d9f.1"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "web-7d9f", APIVersion: "v1"},
		Type:           corev1.EventTypeWarning, Reason: "Failed", Count: 1, FirstTimestamp: now, LastTimestamp: now,
		Message: `Failed to pull image "registry.example/web:nope": ImagePullBackOff`,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	getJSON := func(path string, v any) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+apiTok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	var evs struct{ Events []hubsrv.EventJSON }
	eventually(t, "the warning is on the hub's API", func() bool {
		getJSON("/api/v1/agents/prod/gitsyncs/"+ns+"/web/events", &evs)
		return len(evs.Events) == 1
	})
	e := evs.Events[0]
	if e.Kind != "Pod" || e.Name != "web-7d9f" || e.Reason != "Failed" || !strings.Contains(e.Message, "ImagePullBackOff") || e.Count != 1 {
		t.Errorf("event on the hub: %+v", e)
	}
	send(client, gitSync(ns, "web", sha))
	eventually(t, "the report carries the count", func() bool {
		var gs struct{ GitSyncs []hubsrv.GitSyncJSON }
		getJSON("/api/v1/gitsyncs", &gs)
		return len(gs.GitSyncs) == 1 && gs.GitSyncs[0].WarningEvents == 1
	})
}
