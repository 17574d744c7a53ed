package channelpb

import "time"

// Paths on the hub's one port that both halves (and the hub's HTTP side)
// must spell alike.
const (
	// WebSocketPath is where the hub serves the channel tunnelled through
	// a WebSocket, for networks that pass only HTTP/1.1.
	WebSocketPath = "/channel/ws"
	// WebSocketSubprotocol names that tunnel: raw gRPC (HTTP/2) frames in
	// binary WebSocket messages. Both sides refuse a connection without it.
	WebSocketSubprotocol = "tether.channel.v1"
	// ProxyPrefix is where the hub serves the Kubernetes API of an agent's
	// cluster, through the agent's stream: ProxyPrefix + agent + "/" +
	// the API path ("/k8s-proxy/prod-eu/api/v1/pods").
	ProxyPrefix = "/k8s-proxy/"
)

// Timings of the stream that both halves rely on: they keep it alive
// through load balancers and NATs with 60 s idle timeouts, and let each
// side tell a dead peer from a quiet one.
const (
	// KeepaliveTime is how long a connection may be idle before its side
	// sends an HTTP/2 ping; under the common 60 s idle timeouts.
	KeepaliveTime = 30 * time.Second
	// KeepaliveTimeout is how long a ping may go unanswered before the
	// connection is dropped.
	KeepaliveTimeout = 15 * time.Second
	// KeepaliveMinPing is the shortest ping interval the hub tolerates
	// from an agent (gRPC's enforcement policy); KeepaliveTime must not be
	// shorter, or the hub ends the connection with "too many pings".
	KeepaliveMinPing = 20 * time.Second
	// DefaultHeartbeat is the heartbeat interval a hub asks for in its
	// Welcome unless configured otherwise, and the one an agent uses when
	// a Welcome asks for none.
	DefaultHeartbeat = 20 * time.Second
	// MaxHeartbeat caps the heartbeat interval on both sides: a stream
	// must carry a message more often than the 60 s idle timeouts.
	MaxHeartbeat = 55 * time.Second
	// IdleHeartbeats is how many heartbeat intervals a stream may stay
	// silent before the hub closes it as dead.
	IdleHeartbeats = 3
	// HelloTimeout is how long the hub waits for an agent's Hello.
	HelloTimeout = 10 * time.Second
	// WelcomeTimeout is how long an agent waits for the hub's Welcome
	// before it gives the stream up and reconnects.
	WelcomeTimeout = 30 * time.Second
)
