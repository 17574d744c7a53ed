package channel_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"google.golang.org/grpc/codes"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/agent"
	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/server"
	tsync "tether.dev/tether/sync"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

// send hands gs to the agent the way the sync loop does: sync builds
// the report, the channel queues and sends it.
func send(c *agent.Client, gs *v1alpha1.GitSync) { tsync.ReportTo(c).Report(gs) }

func gitSync(ns, name, rev string) *v1alpha1.GitSync {
	return &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.GitSyncSpec{
			Source: v1alpha1.GitSource{URL: "https://git.example/app.git", Ref: v1alpha1.GitRef{Branch: "main"}},
			Path:   "deploy/staging",
		},
		Status: v1alpha1.GitSyncStatus{
			LastAppliedRevision:   rev,
			LastAttemptedRevision: rev,
			Conditions: []metav1.Condition{{
				Type: v1alpha1.ReadyCondition, Status: metav1.ConditionTrue,
				Reason: v1alpha1.ReasonSucceeded, Message: "applied " + rev,
			}},
			Namespaces: []v1alpha1.NamespaceCount{{Namespace: ns, Objects: 3}},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	serverTLS, caPEM := selfSigned(t)
	for _, tc := range []struct {
		scheme string
		tls    bool
	}{
		{"http", false},
		{"https", true},
		{"ws", false},
		{"wss", true},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			tok, sk := newTokens("tok-a", "staging"), newSink()
			var hubTLS *tls.Config
			var ca []byte
			if tc.tls {
				hubTLS, ca = serverTLS, caPEM
			}
			h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk, HubVersion: "hub-1"}, hubTLS)
			c := startAgent(t, agent.Options{
				HubURL: h.url(tc.scheme), AgentName: "staging", Token: "tok-a", CAData: ca,
				Version: "v0.1.0", ClusterUID: "uid-1",
			})
			eventually(t, "the agent is connected", c.Connected)
			if hl := sk.hello("staging"); hl.GetVersion() != "v0.1.0" || hl.GetClusterUid() != "uid-1" {
				t.Errorf("hello = %v", hl)
			}
			send(c, gitSync("apps", "web", "main@sha1:"+sha))
			eventually(t, "the report is acked", func() bool { return sk.get("staging", "apps", "web") != nil && c.Pending() == 0 })
			r := sk.get("staging", "apps", "web")
			if r.GetPhase() != "synced" || r.GetRevision() != "main@sha1:"+sha || r.GetRef() != "branch:main" ||
				r.GetSourceUrl() != "https://git.example/app.git" || len(r.GetNamespaces()) != 1 || len(r.GetConditions()) != 1 {
				t.Errorf("report = %v", r)
			}
			if got := h.srv.ConnectedAgents(); !slices.Equal(got, []string{"staging"}) {
				t.Errorf("ConnectedAgents = %v", got)
			}
			sk.check(t)
		})
	}
}

func TestSyncNow(t *testing.T) {
	tok, sk := newTokens("tok-a", "a", "tok-b", "b"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk}, nil)
	var mu sync.Mutex
	got := map[string][]string{}
	onSync := func(name string) func(*channelpb.SyncNow) {
		return func(m *channelpb.SyncNow) {
			mu.Lock()
			defer mu.Unlock()
			got[name] = append(got[name], m.GetReason())
		}
	}
	seen := func(name string) []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got[name])
	}
	a := startAgent(t, agent.Options{HubURL: h.url("http"), AgentName: "a", Token: "tok-a", OnSyncNow: onSync("a")})
	b := startAgent(t, agent.Options{HubURL: h.url("ws"), AgentName: "b", Token: "tok-b", OnSyncNow: onSync("b")})
	eventually(t, "both agents are connected", func() bool { return a.Connected() && b.Connected() })
	if got := h.srv.ConnectedAgents(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("ConnectedAgents = %v", got)
	}

	if err := h.srv.SyncNow("a", &channelpb.SyncNow{Namespace: "apps", Name: "web", Reason: "one"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a gets the sync now", func() bool { return slices.Equal(seen("a"), []string{"one"}) })
	if n := h.srv.Broadcast(&channelpb.SyncNow{RepoUrl: "https://git.example/app.git", BranchOrTag: "main", Reason: "push"}); n != 2 {
		t.Errorf("Broadcast reached %d agents, want 2", n)
	}
	eventually(t, "both get the broadcast", func() bool {
		return slices.Equal(seen("a"), []string{"one", "push"}) && slices.Equal(seen("b"), []string{"push"})
	})
	if err := h.srv.SyncNow("nobody", &channelpb.SyncNow{}); !errors.Is(err, server.ErrNotConnected) {
		t.Errorf("SyncNow to an unknown agent: %v, want ErrNotConnected", err)
	}
}

func TestBadToken(t *testing.T) {
	tok, sk := newTokens("tok-a", "a"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk}, nil)
	var logs syncBuffer
	startAgent(t, agent.Options{
		HubURL: h.url("http"), AgentName: "a", Token: "s3cret-wrong-token",
		Logger: testLogger(t, &logs), Backoff: agent.Backoff{Initial: 50 * time.Millisecond, Max: 100 * time.Millisecond},
	})
	eventually(t, "the agent retried", func() bool { return tok.calls.Load() >= 3 })
	if sk.isConnected("a") {
		t.Error("an agent with a bad token is connected")
	}
	out := logs.String()
	if !contains(out, "hub refused the agent's token") || !contains(out, "retryIn=") {
		t.Errorf("no clear log line about the refused token:\n%s", out)
	}
	if contains(out, "s3cret-wrong-token") {
		t.Error("the token appears in the log")
	}
	st := rawStream(t, h.addr, "nope")
	if s := endCode(st); s.Code() != codes.Unauthenticated {
		t.Errorf("bad token: %v, want Unauthenticated", s)
	}
	if s := endCode(rawStream(t, h.addr, "")); s.Code() != codes.Unauthenticated {
		t.Errorf("no token: %v, want Unauthenticated", s)
	}
}

func TestRevokedMidStream(t *testing.T) {
	tok, sk := newTokens("tok-a", "a"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk, AuthRecheck: 50 * time.Millisecond}, nil)
	c := startAgent(t, agent.Options{HubURL: h.url("http"), AgentName: "a", Token: "tok-a"})
	eventually(t, "connected", func() bool { return c.Connected() && sk.isConnected("a") })

	tok.revoke("tok-a")
	eventually(t, "the stream ends", func() bool { return !c.Connected() && !sk.isConnected("a") })
	before := tok.calls.Load()
	eventually(t, "the agent retries", func() bool { return tok.calls.Load() >= before+2 })
	send(c, gitSync("apps", "web", "main@sha1:"+sha)) // waits in the buffer
	if c.Connected() {
		t.Fatal("connected with a revoked token")
	}

	tok.set("tok-a", "a")
	eventually(t, "reconnected and the report acked", func() bool { return c.Connected() && c.Pending() == 0 })
	if sk.get("a", "apps", "web") == nil {
		t.Error("the report made while revoked never arrived")
	}
}

func TestTokenFileRotation(t *testing.T) {
	tok, sk := newTokens("old", "a"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk, AuthRecheck: 50 * time.Millisecond}, nil)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startAgent(t, agent.Options{HubURL: h.url("http"), AgentName: "a", TokenFile: file})
	eventually(t, "connected", c.Connected)
	tok.set("new", "a")
	if err := os.WriteFile(file, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok.revoke("old")
	eventually(t, "reconnected with the new token", func() bool {
		sk.mu.Lock()
		defer sk.mu.Unlock()
		return slices.Equal(sk.events, []string{"connected a", "disconnected a", "connected a"}) && c.Connected()
	})
}

func TestWrongAgentName(t *testing.T) {
	tok, sk := newTokens("tok-a", "a"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk}, nil)
	st := rawStream(t, h.addr, "tok-a")
	if err := st.Send(hello("b")); err != nil {
		t.Fatal(err)
	}
	s := endCode(st)
	if s.Code() != codes.PermissionDenied || !contains(s.Message(), "an agent can only report for itself") {
		t.Errorf("hello as b with a's token: %v", s)
	}
	var logs syncBuffer
	startAgent(t, agent.Options{HubURL: h.url("http"), AgentName: "b", Token: "tok-a", Logger: testLogger(t, &logs)})
	eventually(t, "the agent logs the refusal", func() bool {
		return contains(logs.String(), "token was issued for another agent name")
	})
	if sk.isConnected("a") || sk.isConnected("b") {
		t.Error("an impostor is connected")
	}
}

// TestHubDown stops the hub, lets the agent report several states, and
// starts a new hub on the same address with the same store.
func TestHubDown(t *testing.T) {
	tok, sk := newTokens("tok-a", "a"), newSink()
	opts := server.ServerOptions{Authenticator: tok, Sink: sk}
	h := startHub(t, "127.0.0.1:0", opts, nil)
	logs := &syncBuffer{}
	c := startAgent(t, agent.Options{HubURL: h.url("http"), AgentName: "a", Token: "tok-a", Logger: testLogger(t, logs)})
	eventually(t, "connected", c.Connected)
	send(c, gitSync("apps", "web", "main@sha1:rev0"))
	send(c, gitSync("apps", "gone", "main@sha1:rev0"))
	eventually(t, "acked", func() bool { return c.Pending() == 0 })

	h.stop()
	eventually(t, "disconnected", func() bool { return !c.Connected() })
	for i := 1; i <= 5; i++ {
		send(c, gitSync("apps", "web", fmt.Sprintf("main@sha1:rev%d", i)))
		send(c, gitSync("apps", "api", fmt.Sprintf("main@sha1:rev%d", i)))
	}
	tsync.ReportTo(c).Forget("apps", "gone")
	if c.Pending() != 3 {
		t.Errorf("pending = %d, want 3 (the newest per GitSync)", c.Pending())
	}
	eventually(t, "a few failed attempts while the hub is away", func() bool {
		return strings.Count(logs.String(), "cannot reach the hub") >= 3
	})

	startHub(t, h.addr, opts, nil)
	eventually(t, "everything acked", func() bool { return c.Connected() && c.Pending() == 0 })
	sk.check(t)
	web := sk.storedFor("a", "apps", "web")
	if len(web) != 2 || web[0].GetRevision() != "main@sha1:rev0" || web[1].GetRevision() != "main@sha1:rev5" {
		t.Errorf("web states stored: %v, want rev0 then rev5 only", revisions(web))
	}
	if api := sk.storedFor("a", "apps", "api"); len(api) != 1 || api[0].GetRevision() != "main@sha1:rev5" {
		t.Errorf("api states stored: %v, want rev5 only", revisions(api))
	}
	if gone := sk.get("a", "apps", "gone"); !gone.GetDeleted() {
		t.Errorf("gone = %v, want deleted", gone)
	}
}

func revisions(rs []*channelpb.SyncReport) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.GetRevision())
	}
	return out
}

func TestMalformed(t *testing.T) {
	tok, sk := newTokens("tok-a", "a"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk, HelloTimeout: 300 * time.Millisecond}, nil)
	for _, tc := range []struct {
		name string
		msgs []*channelpb.AgentMessage
	}{
		{"report before hello", []*channelpb.AgentMessage{report("apps", "web", 1)}},
		{"empty message first", []*channelpb.AgentMessage{{}}},
		{"hello without a name", []*channelpb.AgentMessage{hello("")}},
		{"empty message", []*channelpb.AgentMessage{hello("a"), {}}},
		{"second hello", []*channelpb.AgentMessage{hello("a"), hello("a")}},
		{"report without a name", []*channelpb.AgentMessage{hello("a"), report("apps", "", 1)}},
		{"report without a namespace", []*channelpb.AgentMessage{hello("a"), report("", "web", 1)}},
		{"report without a state version", []*channelpb.AgentMessage{hello("a"), report("apps", "web", 0)}},
		{"empty report", []*channelpb.AgentMessage{hello("a"), {Msg: &channelpb.AgentMessage_Report{}}}},
		{"no hello at all", nil},
		{"hello with a slash in the name", []*channelpb.AgentMessage{hello("a/b")}},
		{"unknown phase", []*channelpb.AgentMessage{hello("a"), reportWith(func(r *channelpb.SyncReport) { r.Phase = "pwned" })}},
		{"unknown condition status", []*channelpb.AgentMessage{hello("a"), reportWith(func(r *channelpb.SyncReport) {
			r.Conditions = []*channelpb.Condition{{Type: "Ready", Status: "Sure"}}
		})}},
		{"ref without a kind", []*channelpb.AgentMessage{hello("a"), reportWith(func(r *channelpb.SyncReport) { r.Ref = "main" })}},
		{"slash in a name", []*channelpb.AgentMessage{hello("a"), reportWith(func(r *channelpb.SyncReport) { r.Name = "x/../y" })}},
		{"huge repeated field", []*channelpb.AgentMessage{hello("a"), reportWith(func(r *channelpb.SyncReport) {
			r.Namespaces = make([]*channelpb.NamespaceCount, channelpb.MaxNamespaces+1)
		})}},
		{"many drifted paths", []*channelpb.AgentMessage{hello("a"), reportWith(func(r *channelpb.SyncReport) {
			r.Drift = &channelpb.DriftSummary{Objects: []*channelpb.DriftedObject{{Kind: "ConfigMap", Name: "c", Paths: make([]string, channelpb.MaxPaths+1)}}}
		})}},
		{"negative count", []*channelpb.AgentMessage{hello("a"), reportWith(func(r *channelpb.SyncReport) {
			r.Namespaces = []*channelpb.NamespaceCount{{Namespace: "apps", Objects: -5}}
		})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := rawStream(t, h.addr, "tok-a")
			for _, m := range tc.msgs {
				if err := st.Send(m); err != nil {
					break
				}
			}
			if len(tc.msgs) > 0 {
				st.CloseSend() // a stream that accepted everything ends OK
			}
			if s := endCode(st); s.Code() != codes.InvalidArgument || s.Message() == "" {
				t.Errorf("%v, want InvalidArgument with a reason", s)
			}
		})
	}
	if sk.calls != 0 {
		t.Errorf("the sink got %d malformed reports", sk.calls)
	}
	c := startAgent(t, agent.Options{HubURL: h.url("http"), AgentName: "a", Token: "tok-a"})
	send(c, gitSync("apps", "web", "main@sha1:"+sha))
	eventually(t, "the hub still works", func() bool { return c.Pending() == 0 && sk.get("a", "apps", "web") != nil })
}

func TestReconnectAfterDrop(t *testing.T) {
	tok, sk := newTokens("tok-a", "a"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk}, nil)
	c := startAgent(t, agent.Options{HubURL: h.url("http"), AgentName: "a", Token: "tok-a"})
	eventually(t, "connected", c.Connected)

	// The store fails once: the hub drops the stream, the agent reconnects
	// and sends the report again.
	sk.mu.Lock()
	sk.failNext = 1
	sk.mu.Unlock()
	send(c, gitSync("apps", "web", "main@sha1:"+sha))
	eventually(t, "the report is stored after a reconnect", func() bool { return c.Pending() == 0 && sk.get("a", "apps", "web") != nil })
	sk.mu.Lock()
	events, calls := slices.Clone(sk.events), sk.calls
	sk.mu.Unlock()
	if calls != 2 || !slices.Equal(events, []string{"connected a", "disconnected a", "connected a"}) {
		t.Errorf("calls %d, events %v", calls, events)
	}

	// A second stream of the same agent replaces the first; the agent comes
	// back and replaces it in turn.
	st := rawStream(t, h.addr, "tok-a")
	if err := st.Send(hello("a")); err != nil {
		t.Fatal(err)
	}
	if s := endCode(st); s.Code() != codes.Aborted {
		t.Errorf("replaced stream: %v, want Aborted", s)
	}
	eventually(t, "the agent is back", func() bool { return c.Connected() && sk.isConnected("a") })
}

func TestIdleStreamCloses(t *testing.T) {
	tok, sk := newTokens("tok-a", "a"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk, Heartbeat: time.Second}, nil)
	st := rawStream(t, h.addr, "tok-a")
	if err := st.Send(hello("a")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if s := endCode(st); s.Code() != codes.Unavailable {
		t.Errorf("silent stream: %v, want Unavailable", s)
	}
	if d := time.Since(start); d < 3*time.Second || d > 6*time.Second {
		t.Errorf("closed after %s, want about 3 heartbeats", d)
	}
	if sk.isConnected("a") {
		t.Error("still connected")
	}
}

func TestStopEndsStreams(t *testing.T) {
	tok, sk := newTokens("tok-a", "a"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk}, nil)
	st := rawStream(t, h.addr, "tok-a")
	if err := st.Send(hello("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil { // the Welcome
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h.srv.Stop(ctx)
	if s := endCode(st); s.Code() != codes.Unavailable {
		t.Errorf("after Stop: %v, want Unavailable", s)
	}
}

func TestFallback(t *testing.T) {
	tok, sk := newTokens(), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk,
		Fallback: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "page "+r.URL.Path) }),
	}, nil)
	resp, err := http.Get(h.url("http") + "/badge/a/b/c.svg")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "page /badge/a/b/c.svg" {
		t.Errorf("fallback served %q", b)
	}
}

// TestPlainHTTPServer serves Handler from an http.Server the hub did not
// configure, and from one that speaks h2c itself (gRPC behind net/http).
func TestPlainHTTPServer(t *testing.T) {
	for _, netHTTPH2C := range []bool{false, true} {
		t.Run(fmt.Sprintf("net/http h2c %v", netHTTPH2C), func(t *testing.T) {
			tok, sk := newTokens("tok-a", "a"), newSink()
			srv := server.NewServer(server.ServerOptions{Authenticator: tok, Sink: sk, Logger: testLogger(t, nil)})
			hs := &http.Server{Handler: srv.Handler()}
			if netHTTPH2C {
				hs.Protocols = new(http.Protocols)
				hs.Protocols.SetHTTP1(true)
				hs.Protocols.SetUnencryptedHTTP2(true)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go hs.Serve(ln)
			t.Cleanup(func() {
				srv.Stop(context.Background())
				hs.Close()
			})
			c := startAgent(t, agent.Options{HubURL: "http://" + ln.Addr().String(), AgentName: "a", Token: "tok-a"})
			send(c, gitSync("apps", "web", "main@sha1:"+sha))
			eventually(t, "the report is acked", func() bool { return c.Pending() == 0 && sk.get("a", "apps", "web") != nil })
		})
	}
}
