// Package channelpb holds the agent channel's protocol: the protobuf
// messages and the gRPC service generated from channel.proto (regenerate
// with `make generate`). It has no behaviour of its own.
package channelpb
