package channel_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"tether.dev/tether/channel/agent"
	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/server"
)

// reportWith is a valid report changed by change.
func reportWith(change func(r *channelpb.SyncReport)) *channelpb.AgentMessage {
	m := report("apps", "web", 1)
	change(m.GetReport())
	return m
}

// TestOversizedMessage: a message over the protocol's cap ends that stream
// with ResourceExhausted before the hub decodes it; the hub goes on.
func TestOversizedMessage(t *testing.T) {
	tok, sk := newTokens("tok-a", "a"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk}, nil)
	st := rawStream(t, h.addr, "tok-a")
	if err := st.Send(hello("a")); err != nil {
		t.Fatal(err)
	}
	big := reportWith(func(r *channelpb.SyncReport) { r.Message = strings.Repeat("x", channelpb.MaxMessageBytes) })
	_ = st.Send(big) // the hub may reset the stream before it is all sent
	s := endCode(st)
	if s.Code() != codes.ResourceExhausted || !contains(s.Message(), "larger than max") {
		t.Errorf("oversized report: %v, want ResourceExhausted", s)
	}
	if sk.calls != 0 {
		t.Errorf("the sink got %d reports", sk.calls)
	}
	c := startAgent(t, agent.Options{HubURL: h.url("http"), AgentName: "a", Token: "tok-a"})
	send(c, gitSync("apps", "web", "main@sha1:"+sha))
	eventually(t, "the hub still works", func() bool { return c.Pending() == 0 && sk.get("a", "apps", "web") != nil })
}

// TestReportsAreTheCallersOwn: a report names no agent; the hub files it
// under the agent of the token, so two agents' GitSyncs of the same name
// stay apart and one cannot overwrite the other's.
func TestReportsAreTheCallersOwn(t *testing.T) {
	tok, sk := newTokens("tok-a", "a", "tok-b", "b"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk}, nil)
	for _, agent := range []string{"a", "b"} {
		st := rawStream(t, h.addr, "tok-"+agent)
		r := report("apps", "web", 1)
		r.GetReport().Revision = "main@sha1:" + agent
		for _, m := range []*channelpb.AgentMessage{hello(agent), r} {
			if err := st.Send(m); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "the report of "+agent+" is stored", func() bool { return sk.get(agent, "apps", "web") != nil })
	}
	if a, b := sk.get("a", "apps", "web").GetRevision(), sk.get("b", "apps", "web").GetRevision(); a != "main@sha1:a" || b != "main@sha1:b" {
		t.Errorf("a's web %s, b's web %s", a, b)
	}
}

// TestStreamsPerAgent: one agent's token opens at most MaxStreamsPerAgent
// streams at a time; one more is refused at once, and the hub goes on
// serving the ones it holds.
func TestStreamsPerAgent(t *testing.T) {
	tok, sk := newTokens("tok-a", "a"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk,
		HelloTimeout: time.Minute, MaxStreamsPerAgent: 3}, nil)
	type ended struct {
		i int
		s *status.Status
	}
	done := make(chan ended, 4)
	streams := make([]channelpb.AgentChannel_ConnectClient, 4)
	for i := range streams {
		streams[i] = rawStream(t, h.addr, "tok-a") // none says Hello
		go func() { done <- ended{i, endCode(streams[i])} }()
	}
	var first ended
	select {
	case first = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("four streams of one agent are all open")
	}
	if first.s.Code() != codes.ResourceExhausted || !contains(first.s.Message(), `agent "a" already has 3 streams`) {
		t.Fatalf("stream %d ended with %v, want ResourceExhausted", first.i, first.s)
	}
	// One of those held says Hello and is served.
	held := streams[(first.i+1)%4]
	if err := held.Send(hello("a")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the held stream's agent is connected", func() bool { return sk.isConnected("a") })
}

// TestBusyHub: over MaxConcurrentRequests, ordinary requests get 503 and
// token checks ResourceExhausted at once, with no data, and the hub does
// not call its handler or its token store for them.
func TestBusyHub(t *testing.T) {
	tok, sk := newTokens("tok-a", "a"), newSink()
	entered, release := make(chan struct{}, 2), make(chan struct{})
	var calls sync.WaitGroup
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk, MaxConcurrentRequests: 2,
		Fallback: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			<-release
			fmt.Fprint(w, "secret data")
		}),
	}, nil)
	for range 2 {
		calls.Add(1)
		go func() {
			defer calls.Done()
			if resp, err := http.Get(h.url("http") + "/slow"); err == nil {
				resp.Body.Close()
			}
		}()
	}
	<-entered
	<-entered
	// Without the cap the request would wait for the two ahead of it.
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(h.url("http") + "/api/v1/gitsyncs")
	if err != nil {
		t.Fatalf("a request over the cap is not refused at once: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || contains(string(body), "secret") {
		t.Errorf("third request: %d %q, want 503 without data", resp.StatusCode, body)
	}
	before := tok.calls.Load()
	if s := endCode(rawStream(t, h.addr, "tok-a")); s.Code() != codes.ResourceExhausted {
		t.Errorf("a stream while the hub is busy: %v, want ResourceExhausted", s)
	}
	if n := tok.calls.Load() - before; n != 0 {
		t.Errorf("the token store was asked %d times while the hub was busy", n)
	}
	close(release)
	calls.Wait()
	c := startAgent(t, agent.Options{HubURL: h.url("http"), AgentName: "a", Token: "tok-a"})
	eventually(t, "an agent connects once the hub is free", c.Connected)
}

// TestSlowRequestCut: an ordinary request that sends its body slowly is cut
// after RequestTimeout, while an agent's stream on the same port, open for
// longer than that, goes on.
func TestSlowRequestCut(t *testing.T) {
	serverTLS, caPEM := selfSigned(t)
	for _, tc := range []struct {
		scheme string
		tls    bool
	}{{"http", false}, {"https", true}, {"ws", false}} {
		t.Run(tc.scheme, func(t *testing.T) {
			tok, sk := newTokens("tok-a", "a"), newSink()
			var hubTLS *tls.Config
			var ca []byte
			if tc.tls {
				hubTLS, ca = serverTLS, caPEM
			}
			h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk, RequestTimeout: 300 * time.Millisecond,
				Heartbeat: time.Second,
				Fallback: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if _, err := io.ReadAll(r.Body); err != nil {
						http.Error(w, "body not read in time", http.StatusRequestTimeout)
						return
					}
					fmt.Fprint(w, "ok")
				}),
			}, hubTLS)
			c := startAgent(t, agent.Options{HubURL: h.url(tc.scheme), AgentName: "a", Token: "tok-a", CAData: ca})
			eventually(t, "connected", c.Connected)

			var conn net.Conn
			var err error
			if tc.tls {
				conn, err = tls.Dial("tcp", h.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			} else {
				conn, err = net.Dial("tcp", h.addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /hooks/github HTTP/1.1\r\nHost: hub\r\nContent-Length: 100000\r\n\r\nonly a little")
			conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang fails the test, it does not hang it
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("the slow request was never answered: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("slow request: %d, want 408", resp.StatusCode)
			}

			send(c, gitSync("apps", "web", "main@sha1:"+sha))
			eventually(t, "the report is acked on the first stream", func() bool { return c.Pending() == 0 && sk.get("a", "apps", "web") != nil })
			sk.mu.Lock()
			events := strings.Join(sk.events, ",")
			sk.mu.Unlock()
			if events != "connected a" {
				t.Errorf("stream events %q: the request deadline cut the agent's stream", events)
			}
		})
	}
}

// TestSyncNowForARedactedURL: the hub only knows a source URL without its
// credentials; a "sync now" for it reaches the agent's code with the URL
// its GitSyncs use, so a push webhook still moves them.
func TestSyncNowForARedactedURL(t *testing.T) {
	tok, sk := newTokens("tok-a", "a"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk}, nil)
	var mu sync.Mutex
	var got []string
	c := startAgent(t, agent.Options{HubURL: h.url("http"), AgentName: "a", Token: "tok-a", OnSyncNow: func(m *channelpb.SyncNow) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m.GetRepoUrl())
	}})
	gs := gitSync("apps", "web", "main@sha1:"+sha)
	gs.Spec.Source.URL = "https://oauth2:glpat-TOKEN@git.example/app.git"
	send(c, gs)
	eventually(t, "the report is stored", func() bool { return sk.get("a", "apps", "web") != nil })
	stored := sk.get("a", "apps", "web").GetSourceUrl()
	if contains(stored, "TOKEN") {
		t.Fatalf("the hub got %q", stored)
	}
	for _, u := range []string{stored, "https://git.example/other.git"} {
		if err := h.srv.SyncNow("a", &channelpb.SyncNow{RepoUrl: u, BranchOrTag: "main"}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both sync nows arrive", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	})
	if got[0] != gs.Spec.Source.URL || got[1] != "https://git.example/other.git" {
		t.Errorf("sync now for %q", got)
	}
}
