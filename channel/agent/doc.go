// Package agent is the agent's half of the channel: it dials the hub (gRPC
// over TLS, h2c for development, or gRPC tunnelled through a WebSocket),
// keeps one long-lived stream open, reconnects with capped, jittered
// exponential backoff, and buffers the newest report per GitSync until the
// hub acknowledges it.
//
// It never blocks the sync loop: Report and Forget only update the buffer.
// It never logs the token.
package agent
