// Package agent is the agent's half of the channel: it dials the hub (gRPC
// over TLS, h2c for development, or gRPC tunnelled through a WebSocket),
// keeps one long-lived stream open, reconnects with capped, jittered
// exponential backoff, and buffers the newest report per GitSync until the
// hub acknowledges it.
//
// It never blocks the sync loop: Send only updates the buffer. It takes
// reports ready-made (the sync loop builds them from the GitSync) and does
// not import the CRD's package.
// It never logs the token.
package agent
