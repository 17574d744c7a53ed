// Package server is the hub's half of the channel: it authenticates every
// call and re-checks the token while a stream is open, makes sure an agent
// reports only for itself, hands Hello and reports to the hub's Sink,
// acknowledges what the Sink holds, and sends "sync now" down to connected
// agents. It serves gRPC and the WebSocket transport on the hub's one port
// beside the hub's own HTTP handler.
//
// It stores nothing itself and never trusts a message's content beyond
// what it validates: a malformed stream is closed, never the hub.
package server
