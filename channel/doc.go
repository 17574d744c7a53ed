// Package channel is the agent channel, both halves side by side: the
// protocol (channelpb), the agent's client that dials out from the cluster
// (agent), the hub's server side (server), and the tunnel that carries
// Kubernetes API requests from the hub to the agent over the same stream
// (tunnel). A protocol change is one reviewable change across them.
//
// The channel never imports the sync loop: sync builds each report and hands
// it to the agent half, which implements sync.ReportSink structurally, and
// the hub half hands what it
// receives to a Sink the hub provides.
package channel
