package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"tether.dev/tether/channel/channelpb"
)

// tokenCreds puts the bearer token on every call. With a file it is read
// per call, so a rotated token takes effect on the next connection.
type tokenCreds struct {
	token      string
	file       string
	requireTLS bool
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t *tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok := t.token
	if t.file != "" {
		b, err := os.ReadFile(t.file)
		if err != nil {
			return nil, fmt.Errorf("agent token file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
		if tok == "" {
			return nil, fmt.Errorf("agent token file %s is empty", t.file)
		}
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials. Only
// https:// uses gRPC's own TLS; http:// and ws:// are for development, and
// wss:// carries TLS in the WebSocket beneath gRPC.
func (t *tokenCreds) RequireTransportSecurity() bool { return t.requireTLS }

// dial builds a client connection for one session; it connects lazily on
// the first call.
func (c *Client) dial() (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{
		grpc.WithPerRPCCredentials(c.creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                channelpb.KeepaliveTime,
			Timeout:             channelpb.KeepaliveTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.DefaultConfig,
			MinConnectTimeout: dialTimeout,
		}),
		grpc.WithUserAgent("tether-agent/" + c.opts.Version),
	}
	addr := c.target.addr
	switch c.target.kind {
	case grpcTLS:
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(c.target.tls)))
	case grpcH2C:
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	case webSocket:
		// A custom dialer turns off gRPC's own proxy support; the
		// WebSocket's HTTP client honours HTTPS_PROXY instead.
		addr = "passthrough:///" + c.target.addr
		opts = append(opts,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(c.dialWebSocket))
	}
	return grpc.NewClient(addr, opts...)
}

// webSocketClient is the HTTP client for the upgrade: proxy from the
// environment, the hub's CA, HTTP/1.1 only (an upgrade needs it).
func webSocketClient(t target) *http.Client {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: channelpb.KeepaliveTime}
	return &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         d.DialContext,
		TLSClientConfig:     t.tls,
		TLSHandshakeTimeout: dialTimeout,
		ForceAttemptHTTP2:   false,
	}}
}

// dialWebSocket opens the WebSocket and presents it to gRPC as a net.Conn.
func (c *Client) dialWebSocket(ctx context.Context, _ string) (net.Conn, error) {
	ws, resp, err := websocket.Dial(ctx, c.target.wsURL, &websocket.DialOptions{
		HTTPClient:   c.ws,
		Subprotocols: []string{channelpb.WebSocketSubprotocol},
	})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("websocket %s: HTTP %d: %w", c.target.wsURL, resp.StatusCode, err)
		}
		return nil, fmt.Errorf("websocket %s: %w", c.target.wsURL, err)
	}
	if ws.Subprotocol() != channelpb.WebSocketSubprotocol {
		ws.Close(websocket.StatusProtocolError, "subprotocol")
		return nil, errors.New("websocket: the hub did not accept the " + channelpb.WebSocketSubprotocol + " subprotocol")
	}
	// The dial context ends with the dial; the conn lives until closed.
	return websocket.NetConn(context.Background(), ws, websocket.MessageBinary), nil
}
