// Package tunnel carries Kubernetes API requests from the hub to the
// cluster over the agent's one channel stream, both halves side by side:
// the multiplexer both ends share (Mux: many concurrent requests, each
// streamed both ways with per-stream flow control and cancellation), the
// hub's half (Forward: one HTTP request in, one streamed answer out) and
// the agent's half (Agent: access decided from the cluster owner's
// ConfigMap tether-access, the request made with impersonation, never with
// the agent's own rights).
//
// The hub is the untrusted side: it says who is calling, and the agent
// alone decides what that caller may do. The tunnel never imports the sync
// loop and never logs a request's headers or body.
package tunnel
