package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"tether.dev/tether/channel/channelpb"
)

// Authenticator is the hub's token store.
type Authenticator interface {
	// Authenticate returns the agent a token was issued for, or an error
	// when it is unknown or revoked. An error that is already a gRPC status
	// (say codes.Unavailable when the store is down) is passed on as is;
	// any other error refuses the call with codes.Unauthenticated.
	Authenticate(ctx context.Context, token string) (agentName string, err error)
}

// Sink is where the hub keeps what agents say. Connected and Disconnected
// alternate per agent, never concurrently for one agent. Report is called
// concurrently for different agents (and briefly for two streams of one
// agent while a new stream replaces the old one).
type Sink interface {
	// Connected is called once the agent's Hello is accepted.
	Connected(agent string, hello *channelpb.Hello)
	// Disconnected is called when the agent's stream ends, unless a newer
	// stream of the same agent has replaced it.
	Disconnected(agent string)
	// Report stores r when its state_version is newer than the one held for
	// that GitSync and says whether it did. Either way the hub then holds
	// this state or a newer one, and the agent gets an Ack. An error ends
	// the stream with codes.Unavailable; the agent sends the report again
	// when it reconnects.
	Report(ctx context.Context, agent string, r *channelpb.SyncReport) (stored bool, err error)
}

// EventSink is what a Sink also implements when the hub keeps agents'
// Warning events; the Welcome then lists FEATURE_EVENTS, and only then
// does an agent send them. Events is called with a validated batch; an
// error ends the stream.
type EventSink interface {
	Events(ctx context.Context, agent string, batch *channelpb.WarningEvents) error
}

// ServerOptions configure a Server. Authenticator and Sink are required.
type ServerOptions struct {
	Authenticator Authenticator
	Sink          Sink
	// Fallback serves every request on the port that is not the channel's
	// (the hub's API, badges, page). Without it they get 404.
	Fallback http.Handler
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// HubVersion goes into the Welcome.
	HubVersion string
	// Heartbeat is the interval agents are asked to send heartbeats at, in
	// whole seconds. Defaults to 20s; at most 55s. A stream silent for
	// three intervals is closed.
	Heartbeat time.Duration
	// AuthRecheck is how often an open stream's token is checked again, so
	// a revoked token ends it. Defaults to the heartbeat, at most 30s.
	AuthRecheck time.Duration
	// HelloTimeout bounds the wait for the first message. Defaults to 10s.
	HelloTimeout time.Duration
	// SendQueue is how many messages may wait to go down one stream before
	// SyncNow refuses more. Defaults to 64. The queue takes memory only
	// while messages wait.
	SendQueue int
	// RequestTimeout bounds an ordinary HTTP request on Handler (the
	// Fallback's: page, API, badges, webhooks): reading its body and
	// writing its answer. The channel's streams are exempt. Defaults to
	// 30s.
	RequestTimeout time.Duration
	// MaxConcurrentRequests caps the requests that may be in flight before
	// they are known to be someone's: Fallback requests (each checks its
	// own token or secret) and the channel's token checks. Over the cap a
	// request gets 503 (ResourceExhausted on the channel) at once, so a
	// flood costs the hub neither memory nor store lookups. Defaults to 256.
	MaxConcurrentRequests int
	// MaxStreamsPerAgent caps one agent's concurrent streams, counted from
	// the token check: the live one and those about to replace it. A newer
	// stream replaces the live one after its Hello (a reconnect must not
	// wait for keepalive to notice that the old connection died); over the
	// cap a stream is refused with ResourceExhausted. Defaults to 3.
	MaxStreamsPerAgent int
	// MaxTunnelStreams caps the tunnelled Kubernetes API requests open at
	// once to one agent; more get 429. Defaults to 256.
	MaxTunnelStreams int
	// MaxProxyRequests caps the tunnelled requests open at once on the
	// hub's port, across agents (they are exempt from RequestTimeout: a
	// watch stays open); more get 503. Defaults to 4096.
	MaxProxyRequests int
}

// The hub's own limits and defaults; the timings both halves rely on
// (keepalive, heartbeats, the Hello's deadline) are channelpb's.
const (
	maxAuthRecheck       = 30 * time.Second
	defaultSendQueue     = 64
	defaultRequest       = 30 * time.Second
	defaultConcurrent    = 256
	defaultPerAgent      = 3
	defaultTunnelStreams = 256
	defaultProxyRequests = 4096
	idleTimeout          = 2 * time.Minute
	maxHeaderBytes       = 64 << 10
	maxStreamsPerConn    = 16
	readHeaderTimeout    = 10 * time.Second
	connReadBuffer       = 8 << 10
)

// ErrNotConnected is returned by SyncNow for an agent without a stream.
var ErrNotConnected = errors.New("agent is not connected")

// Server is the hub's end of the channel; it implements
// channelpb.AgentChannelServer.
type Server struct {
	channelpb.UnimplementedAgentChannelServer

	opts ServerOptions
	log  *slog.Logger
	grpc *grpc.Server
	// conns feeds WebSocket tunnels and h2c connections to grpc.
	conns *connListener

	// unknown holds a token per request not yet known to be someone's;
	// see ServerOptions.MaxConcurrentRequests.
	unknown chan struct{}
	// proxies holds a token per open tunnelled request on Handler.
	proxies chan struct{}

	mu       sync.Mutex
	slots    map[string]*slot
	streams  map[string]int // streams per agent, from the token check on
	nextID   uint64
	stopped  bool
	live     map[*context.CancelCauseFunc]struct{} // every running Connect
	inflight sync.WaitGroup                        // every gRPC request on Handler

	serveDone chan struct{}
}

// slot serialises one agent's Connected/Disconnected and holds its current
// session.
type slot struct {
	mu  sync.Mutex
	cur *session
}

// NewServer returns a Server ready to serve through GRPCServer or Handler.
func NewServer(opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = channelpb.DefaultHeartbeat
	}
	opts.Heartbeat = min(max(opts.Heartbeat.Round(time.Second), time.Second), channelpb.MaxHeartbeat)
	if opts.AuthRecheck <= 0 {
		opts.AuthRecheck = opts.Heartbeat
	}
	opts.AuthRecheck = min(opts.AuthRecheck, maxAuthRecheck)
	if opts.HelloTimeout <= 0 {
		opts.HelloTimeout = channelpb.HelloTimeout
	}
	if opts.SendQueue <= 0 {
		opts.SendQueue = defaultSendQueue
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = defaultRequest
	}
	if opts.MaxConcurrentRequests <= 0 {
		opts.MaxConcurrentRequests = defaultConcurrent
	}
	if opts.MaxStreamsPerAgent <= 0 {
		opts.MaxStreamsPerAgent = defaultPerAgent
	}
	if opts.MaxTunnelStreams <= 0 {
		opts.MaxTunnelStreams = defaultTunnelStreams
	}
	if opts.MaxProxyRequests <= 0 {
		opts.MaxProxyRequests = defaultProxyRequests
	}
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		unknown:   make(chan struct{}, opts.MaxConcurrentRequests),
		proxies:   make(chan struct{}, opts.MaxProxyRequests),
		slots:     map[string]*slot{},
		streams:   map[string]int{},
		live:      map[*context.CancelCauseFunc]struct{}{},
		conns:     newConnListener(),
		serveDone: make(chan struct{}),
	}
	s.grpc = grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             channelpb.KeepaliveMinPing,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    channelpb.KeepaliveTime,
			Timeout: channelpb.KeepaliveTimeout,
		}),
		// Thousands of mostly idle streams: no write buffer held between
		// flushes, a small read buffer. It matters for the WebSocket
		// transport; Handler's streams use net/http's buffers.
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(connReadBuffer),
		// A message over the protocol's cap ends the stream with
		// ResourceExhausted before the hub decodes it.
		grpc.MaxRecvMsgSize(channelpb.MaxMessageBytes),
		// An agent needs one stream per connection.
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		// Agents' messages are decoded off the reader's stack.
		grpc.ForceServerCodecV2(offStackCodec{encoding.GetCodecV2(proto.Name)}),
		grpc.ChainStreamInterceptor(s.authStream),
		grpc.ChainUnaryInterceptor(s.authUnary),
	)
	channelpb.RegisterAgentChannelServer(s.grpc, s)
	go func() {
		defer close(s.serveDone)
		_ = s.grpc.Serve(s.conns)
	}()
	return s
}

// GRPCServer is the gRPC server, for a hub that listens for gRPC on a port
// of its own. Handler serves the same server on the shared port.
func (s *Server) GRPCServer() *grpc.Server { return s.grpc }

// Stop ends every stream with codes.Unavailable (agents reconnect with
// backoff, to this hub's successor), then stops gRPC gracefully; when ctx
// ends first it stops at once. Stop the channel before shutting the
// http.Server down: HTTP/2 connections with open streams never go idle.
func (s *Server) Stop(ctx context.Context) {
	s.mu.Lock()
	s.stopped = true
	for cancel := range s.live {
		(*cancel)(errShutdown)
	}
	s.mu.Unlock()
	// Let the handlers write their status before gRPC closes the HTTP/2
	// streams under them (for Handler's streams, draining is closing).
	handlersDone := make(chan struct{})
	go func() {
		s.inflight.Wait()
		close(handlersDone)
	}()
	select {
	case <-handlersDone:
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
	_ = s.conns.Close()
	<-s.serveDone
}

// track adds a running Connect to the ones Stop ends; it fails once Stop
// has begun.
func (s *Server) track(cancel *context.CancelCauseFunc) (untrack func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, errShutdown
	}
	s.live[cancel] = struct{}{}
	return func() {
		s.mu.Lock()
		delete(s.live, cancel)
		s.mu.Unlock()
	}, nil
}

// enter takes a slot for a request not yet known to be someone's, or
// reports false when MaxConcurrentRequests are in flight already.
func (s *Server) enter() (leave func(), ok bool) {
	select {
	case s.unknown <- struct{}{}:
		return func() { <-s.unknown }, true
	default:
		return nil, false
	}
}

// admit counts a stream of agent, or refuses it over MaxStreamsPerAgent.
func (s *Server) admit(agent string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[agent] >= s.opts.MaxStreamsPerAgent {
		return nil, status.Errorf(codes.ResourceExhausted,
			"agent %q already has %d streams open or opening; one is enough", agent, s.streams[agent])
	}
	s.streams[agent]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.streams[agent]--; s.streams[agent] <= 0 {
			delete(s.streams, agent)
		}
	}, nil
}

// serveGRPC runs one gRPC request from Handler, counted for Stop.
func (s *Server) serveGRPC(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "14") // codes.Unavailable
		w.Header().Set("Grpc-Message", "the hub is shutting down")
		w.WriteHeader(http.StatusOK)
		return
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()
	s.grpc.ServeHTTP(w, r)
}

// offStackCodec is gRPC's proto codec, decoding on a short-lived goroutine
// (offStack): decoding a report goes deep, and would grow the stack of the
// stream's reader, which waits in Recv as long as the agent is connected,
// for good (a stack shrinks only while it uses under a quarter of it).
type offStackCodec struct{ encoding.CodecV2 }

func (c offStackCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return offStack(func() error { return c.CodecV2.Unmarshal(data, v) })
}
