package channel_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"tether.dev/tether/channel/agent"
	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/server"
	"tether.dev/tether/internal/testenv"
)

// tokens is the hub's token store as the channel sees it.
type tokens struct {
	mu    sync.Mutex
	m     map[string]string
	calls atomic.Int64
}

func newTokens(pairs ...string) *tokens {
	t := &tokens{m: map[string]string{}}
	for i := 0; i+1 < len(pairs); i += 2 {
		t.m[pairs[i]] = pairs[i+1]
	}
	return t
}

func (t *tokens) Authenticate(_ context.Context, token string) (string, error) {
	t.calls.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	agent, ok := t.m[token]
	if !ok {
		return "", errors.New("unknown or revoked token")
	}
	return agent, nil
}

func (t *tokens) set(token, agent string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[token] = agent
}

func (t *tokens) revoke(token string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, token)
}

// sink keeps what the hub would store, and checks the channel's promises:
// no state older than one already held arrives after it.
type sink struct {
	mu         sync.Mutex
	latest     map[string]*channelpb.SyncReport // agent/ns/name
	stored     []*channelpb.SyncReport          // every new state, in order
	calls      int
	violations []string
	connected  map[string]*channelpb.Hello
	events     []string
	failNext   int // Report fails this many times
}

func newSink() *sink {
	return &sink{latest: map[string]*channelpb.SyncReport{}, connected: map[string]*channelpb.Hello{}}
}

func (s *sink) Connected(agent string, hello *channelpb.Hello) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connected[agent] = hello
	s.events = append(s.events, "connected "+agent)
}

func (s *sink) Disconnected(agent string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.connected, agent)
	s.events = append(s.events, "disconnected "+agent)
}

func (s *sink) Report(_ context.Context, agent string, r *channelpb.SyncReport) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failNext > 0 {
		s.failNext--
		return false, errors.New("database is locked")
	}
	k := agent + "/" + r.GetNamespace() + "/" + r.GetName()
	old := s.latest[k]
	switch {
	case old == nil || r.GetStateVersion() > old.GetStateVersion():
		s.latest[k] = proto.Clone(r).(*channelpb.SyncReport)
		s.stored = append(s.stored, s.latest[k])
		return true, nil
	case r.GetStateVersion() < old.GetStateVersion():
		s.violations = append(s.violations, fmt.Sprintf("%s: state %d after %d", k, r.GetStateVersion(), old.GetStateVersion()))
	}
	return false, nil
}

func (s *sink) get(agent, ns, name string) *channelpb.SyncReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest[agent+"/"+ns+"/"+name]
}

func (s *sink) isConnected(agent string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected[agent] != nil
}

func (s *sink) hello(agent string) *channelpb.Hello {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected[agent]
}

func (s *sink) storedFor(agent, ns, name string) []*channelpb.SyncReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*channelpb.SyncReport
	for _, r := range s.stored {
		if r.GetNamespace() == ns && r.GetName() == name {
			out = append(out, r)
		}
	}
	return out
}

func (s *sink) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.violations {
		t.Error(v)
	}
}

// hub is a channel server on a loopback port, as `tether hub` runs it.
type hub struct {
	srv  *server.Server
	hs   *http.Server
	addr string
	tls  *tls.Config
	once sync.Once
}

// startHub serves on addr ("127.0.0.1:0" for a fresh port).
func startHub(t testing.TB, addr string, opts server.ServerOptions, tlsConf *tls.Config) *hub {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old listener's port may take a moment to free
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t, nil)
	}
	h := &hub{srv: server.NewServer(opts), addr: ln.Addr().String(), tls: tlsConf}
	h.hs = h.srv.HTTPServer(tlsConf)
	go func() {
		if tlsConf != nil {
			_ = h.hs.ServeTLS(ln, "", "")
		} else {
			_ = h.hs.Serve(ln)
		}
	}()
	t.Cleanup(h.stop)
	return h
}

func (h *hub) stop() {
	h.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.srv.Stop(ctx)
		_ = h.hs.Shutdown(ctx)
	})
}

func (h *hub) url(scheme string) string { return scheme + "://" + h.addr }

// testLogger writes to the test's output, and to buf when given, until the
// test ends.
func testLogger(t testing.TB, buf *syncBuffer) *slog.Logger {
	var done atomic.Bool
	t.Cleanup(func() { done.Store(true) })
	out := t.Output()
	w := writerFunc(func(p []byte) (int, error) {
		if buf != nil {
			buf.Write(p)
		}
		if done.Load() {
			return len(p), nil
		}
		return out.Write(p)
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAgent runs a client until the test ends.
func startAgent(t testing.TB, opts agent.Options) *agent.Client {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t, nil)
	}
	if opts.Backoff == (agent.Backoff{}) {
		opts.Backoff = agent.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	}
	c, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c
}

// eventually polls cond for up to 10 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if !cond() {
			return fmt.Errorf("timed out waiting until %s", what)
		}
		return nil
	})
}

// selfSigned makes a certificate for 127.0.0.1 that is its own CA.
func selfSigned(t testing.TB) (*tls.Config, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tether hub test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, certPEM
}

// rawStream opens a Connect stream by hand over h2c, to send what a real
// agent never would.
func rawStream(t testing.TB, addr, token string) channelpb.AgentChannel_ConnectClient {
	t.Helper()
	st, closeStream, err := testenv.RawStream(addr, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeStream)
	return st
}

// endCode reads st until it ends and returns its status.
func endCode(st channelpb.AgentChannel_ConnectClient) *status.Status {
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return status.New(codes.OK, "")
			}
			return status.Convert(err)
		}
	}
}

func hello(name string) *channelpb.AgentMessage {
	return &channelpb.AgentMessage{Msg: &channelpb.AgentMessage_Hello{Hello: &channelpb.Hello{AgentName: name}}}
}

func report(ns, name string, version uint64) *channelpb.AgentMessage {
	return &channelpb.AgentMessage{Msg: &channelpb.AgentMessage_Report{Report: &channelpb.SyncReport{
		Namespace: ns, Name: name, StateVersion: version, Phase: "synced",
	}}}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
