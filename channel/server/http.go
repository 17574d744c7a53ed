package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc/mem"

	"tether.dev/tether/channel/channelpb"
)

// Handler serves the hub's one port: gRPC over HTTP/2 with TLS
// (content-type application/grpc), gRPC over cleartext HTTP/2 (h2c with
// prior knowledge), the WebSocket transport at /channel/ws, and the
// Fallback for everything else.
//
// Cleartext HTTP/2 connections are taken over whole and served by gRPC's
// own transport (the deprecated x/net h2c package is not needed): that
// costs less memory per agent than gRPC behind net/http, and applies the
// keepalive policy. So h2c is for gRPC only; the API and page speak
// HTTP/1.1 or HTTP/2 over TLS. An http.Server with
// Protocols.SetUnencryptedHTTP2(true) also works, through net/http.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc"):
			s.serveGRPC(w, r)
		case r.Method == "PRI" && r.RequestURI == "*" && r.ProtoMajor == 2:
			s.serveH2C(w, r)
		case r.URL.Path == channelpb.WebSocketPath:
			s.serveWebSocket(w, r)
		case strings.HasPrefix(r.URL.Path, channelpb.ProxyPrefix) && s.opts.Fallback != nil:
			s.serveProxy(w, r)
		case s.opts.Fallback != nil:
			s.serveFallback(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// serveFallback runs one ordinary request within RequestTimeout and under
// MaxConcurrentRequests. The deadlines are per request, so the
// connection-wide ReadTimeout and WriteTimeout can stay 0 for the streams.
func (s *Server) serveFallback(w http.ResponseWriter, r *http.Request) {
	leave, ok := s.enter()
	if !ok {
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Connection", "close")
		http.Error(w, "the hub is busy; retry later", http.StatusServiceUnavailable)
		return
	}
	defer leave()
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(s.opts.RequestTimeout)
	// Errors mean a transport without deadlines (a test's recorder); the
	// request then runs as before.
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline)
	// net/http does not reset a write deadline between requests on one
	// HTTP/1 connection (only ReadTimeout's read deadline); IdleTimeout
	// bounds the connection from here on.
	defer rc.SetWriteDeadline(time.Time{})
	s.opts.Fallback.ServeHTTP(w, r)
}

// serveProxy runs one tunnelled request (channelpb.ProxyPrefix: the
// Kubernetes API of an agent's cluster) under MaxProxyRequests. The
// Fallback handles it (the hub checks the caller's token), without
// RequestTimeout: a watch or a log follow stays open as long as the
// client wants.
func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request) {
	select {
	case s.proxies <- struct{}{}:
		defer func() { <-s.proxies }()
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "the hub is busy; retry later", http.StatusServiceUnavailable)
		return
	}
	// Deadlines a previous request on this connection left behind go.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	s.opts.Fallback.ServeHTTP(w, r)
}

// HTTPServer returns an http.Server for the hub's one port, serving Handler
// and configured by ConfigureHTTPServer. With tlsConf it is meant for
// ServeTLS(l, "", ""), without for Serve(l).
func (s *Server) HTTPServer(tlsConf *tls.Config) *http.Server {
	hs := &http.Server{Handler: s.Handler(), TLSConfig: tlsConf}
	ConfigureHTTPServer(hs)
	return hs
}

// ConfigureHTTPServer prepares hs for the channel: HTTP/2 pings on idle
// TLS connections under 60 s, a header timeout, an idle timeout for
// keep-alive connections and a cap on header size. It leaves ReadTimeout
// and WriteTimeout alone; they must stay 0, or they would cut the
// long-lived streams: Handler gives every other request deadlines of its
// own (ServerOptions.RequestTimeout).
func ConfigureHTTPServer(hs *http.Server) {
	if hs.HTTP2 == nil {
		hs.HTTP2 = &http.HTTP2Config{}
	}
	hs.HTTP2.SendPingTimeout = channelpb.KeepaliveTime
	hs.HTTP2.PingTimeout = channelpb.KeepaliveTimeout
	if hs.ReadHeaderTimeout == 0 {
		hs.ReadHeaderTimeout = readHeaderTimeout
	}
	if hs.IdleTimeout == 0 {
		// A connection with an open stream is never idle.
		hs.IdleTimeout = idleTimeout
	}
	if hs.MaxHeaderBytes == 0 {
		hs.MaxHeaderBytes = maxHeaderBytes
	}
}

// serveWebSocket upgrades the request and hands the tunnel to the gRPC
// server as one more accepted connection.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{channelpb.WebSocketSubprotocol}})
	if err != nil {
		s.log.Info("websocket upgrade failed", "remote", r.RemoteAddr, "error", err)
		return
	}
	if c.Subprotocol() != channelpb.WebSocketSubprotocol {
		c.Close(websocket.StatusPolicyViolation, "subprotocol "+channelpb.WebSocketSubprotocol+" required")
		return
	}
	// The tunnel outlives this handler; the gRPC server closes it.
	conn := &wsConn{Conn: websocket.NetConn(context.Background(), c, websocket.MessageBinary), remote: remoteAddr(r)}
	if err := s.conns.deliver(conn); err != nil {
		conn.Close()
	}
}

// h2cPreface is what net/http already read of the client's HTTP/2
// preface when it hands the "PRI *" request to a handler.
const h2cPreface = "PRI * HTTP/2.0\r\n\r\n"

// serveH2C takes a cleartext HTTP/2 connection over from net/http and
// hands it to gRPC's own server transport, preface and all.
func (s *Server) serveH2C(w http.ResponseWriter, r *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cleartext HTTP/2 is not supported here", http.StatusHTTPVersionNotSupported)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		s.log.Info("h2c takeover failed", "remote", r.RemoteAddr, "error", err)
		return
	}
	_ = conn.SetDeadline(time.Time{})
	buffered, _ := rw.Reader.Peek(rw.Reader.Buffered())
	c := &prefixedConn{Conn: conn, pending: append([]byte(h2cPreface), buffered...), raw: rawConnOf(conn)}
	if err := s.conns.deliver(c); err != nil {
		conn.Close()
	}
}

// prefixedConn replays bytes already read before reading the connection.
type prefixedConn struct {
	net.Conn
	pending []byte
	// raw is the TCP connection's, for ReadOnReady; nil for other kinds.
	raw syscall.RawConn
}

// ReadOnReady implements gRPC's optional reader interface for connections
// (internal/transport/readyreader.Reader): gRPC then takes a read buffer
// from its pool only once data has come, instead of holding ReadBufferSize
// per connection while the agent is silent, as it does for a plain
// *net.TCPConn. Without it a taken-over h2c connection pins its buffer.
func (c *prefixedConn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	if len(c.pending) > 0 || c.raw == nil {
		buf := pool.Get(bufSize)
		n, err := c.Read(*buf)
		if n == 0 {
			pool.Put(buf)
			if err == nil {
				err = io.ErrNoProgress
			}
			return nil, 0, err
		}
		// A read that returns data and an error: the error comes again on
		// the next read.
		return buf, n, nil
	}
	return readOnReady(c.raw, bufSize, pool)
}

func (c *prefixedConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// wsConn reports the HTTP client's address as its remote address.
type wsConn struct {
	net.Conn
	remote net.Addr
}

func (c *wsConn) RemoteAddr() net.Addr { return c.remote }

func remoteAddr(r *http.Request) net.Addr {
	if a, err := net.ResolveTCPAddr("tcp", r.RemoteAddr); err == nil {
		return a
	}
	return pipeAddr{}
}

// connListener is an in-process net.Listener that yields WebSocket tunnels
// and taken-over h2c connections to the gRPC server.
type connListener struct {
	conns  chan net.Conn
	done   chan struct{}
	closer sync.Once
}

func newConnListener() *connListener {
	return &connListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

var errListenerClosed = errors.New("channel listener closed")

// deliver hands c to Accept, or fails once the listener is closed.
func (l *connListener) deliver(c net.Conn) error {
	select {
	case l.conns <- c:
		return nil
	case <-l.done:
		return errListenerClosed
	}
}

// Accept implements net.Listener.
func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *connListener) Close() error {
	l.closer.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener.
func (l *connListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "channel" }
func (pipeAddr) String() string  { return "in-process" }
