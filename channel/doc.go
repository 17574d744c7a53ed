// Package channel is the agent channel, both halves side by side: the
// protocol (channelpb), the agent's client that dials out from the cluster
// (agent) and the hub's server side (server). A protocol change is one
// reviewable change across the three.
//
// The channel never imports the sync loop: the agent half implements the
// sync.Reporter interface structurally, and the hub half hands what it
// receives to a Sink the hub provides.
package channel
