package agent

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/tunnel"
)

// Options configure a Client.
type Options struct {
	// HubURL selects the transport: https:// is gRPC over TLS, http:// is
	// gRPC over cleartext HTTP/2 (h2c, for tests and development), wss://
	// and ws:// tunnel gRPC through a WebSocket at <url>/channel/ws for
	// proxies and load balancers that only pass HTTP/1.1 upgrades.
	HubURL string
	// AgentName is this agent's name; the hub accepts it only with a token
	// issued for this name.
	AgentName string
	// Token is the bearer token. TokenFile, when set instead, is read on
	// every connection so a rotated token is picked up without a restart.
	Token     string
	TokenFile string
	// CAFile or CAData (PEM) is the CA that signed the hub's certificate;
	// without either the system roots are used.
	CAFile string
	CAData []byte
	// Version and ClusterUID go into the Hello.
	Version    string
	ClusterUID string
	// OnSyncNow is called for every "sync now" from the hub. It runs on the
	// stream's receiving goroutine, so it must return quickly.
	OnSyncNow func(*channelpb.SyncNow)
	// OnAck, when set, is called with every Ack the hub sends: the hub
	// holds that state_version of the GitSync or a newer one (it stored
	// the report, or had a newer state already). It runs on the stream's
	// receiving goroutine, so it must return quickly. Tests use it to know
	// exactly what the hub acknowledged.
	OnAck func(namespace, name string, stateVersion uint64)
	// Tunnel, when set, serves the hub's tunnelled Kubernetes API
	// requests on the stream (the agent announces FEATURE_TUNNEL). Its Run
	// must be running for it to grant anything.
	Tunnel *tunnel.Agent
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Backoff between connection attempts.
	Backoff Backoff
	// Heartbeat, when set, is used instead of the interval the hub's Welcome
	// asks for if it is shorter. Without either it is 20s; it is never more
	// than 55s, under common 60 s idle timeouts.
	Heartbeat time.Duration
}

// dialTimeout bounds one TCP connect to the hub; the stream's own timings
// (keepalive, heartbeats, the Welcome's deadline) are channelpb's, shared
// with the hub.
const dialTimeout = 20 * time.Second

// transport is how the client reaches the hub.
type transport int

const (
	grpcTLS transport = iota
	grpcH2C
	webSocket
)

// target is a parsed HubURL.
type target struct {
	kind  transport
	addr  string // host:port for gRPC
	wsURL string // full URL for the WebSocket transport
	tls   *tls.Config
}

// parseTarget turns the hub URL and CA options into a target.
func parseTarget(o Options) (target, error) {
	u, err := url.Parse(o.HubURL)
	if err != nil {
		return target{}, fmt.Errorf("hub URL %q: %w", o.HubURL, err)
	}
	if u.Host == "" {
		return target{}, fmt.Errorf("hub URL %q: no host", o.HubURL)
	}
	var t target
	var secure bool
	switch u.Scheme {
	case "https":
		t.kind, secure = grpcTLS, true
	case "http":
		t.kind = grpcH2C
	case "wss":
		t.kind, secure = webSocket, true
	case "ws":
		t.kind = webSocket
	default:
		return target{}, fmt.Errorf("hub URL %q: scheme must be https, http, wss or ws", o.HubURL)
	}
	t.addr = u.Host
	if u.Port() == "" {
		port := "80"
		if secure {
			port = "443"
		}
		t.addr = net.JoinHostPort(u.Hostname(), port)
	}
	if t.kind == webSocket {
		ws := *u
		if !strings.HasSuffix(ws.Path, channelpb.WebSocketPath) {
			ws.Path = strings.TrimSuffix(ws.Path, "/") + channelpb.WebSocketPath
		}
		ws.RawQuery, ws.Fragment = "", ""
		t.wsURL = ws.String()
	}
	if secure {
		t.tls, err = tlsConfig(o, u.Hostname())
		if err != nil {
			return target{}, err
		}
	} else if o.CAFile != "" || len(o.CAData) > 0 {
		return target{}, fmt.Errorf("hub URL %q: a CA is given but the scheme is not TLS", o.HubURL)
	}
	return t, nil
}

// tlsConfig trusts only the given CA when there is one, else the system's.
func tlsConfig(o Options, serverName string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	pem := o.CAData
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("hub CA file: %w", err)
		}
		pem = append(append([]byte{}, pem...), b...)
	}
	if len(pem) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("hub CA: no PEM certificate found")
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// heartbeat picks the interval: the hub's wish, or ours when it is set
// and shorter, never above channelpb.MaxHeartbeat.
func heartbeat(own time.Duration, w *channelpb.Welcome) time.Duration {
	hub := time.Duration(w.GetHeartbeatSeconds()) * time.Second
	hb := hub
	switch {
	case own > 0 && (hub <= 0 || own < hub):
		hb = own
	case hub <= 0:
		hb = channelpb.DefaultHeartbeat
	}
	return min(hb, channelpb.MaxHeartbeat)
}
