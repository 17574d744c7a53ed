// Package channelpb holds the agent channel's protocol: the protobuf
// messages and the gRPC service generated from channel.proto (regenerate
// with `make generate`), and the rules of the protocol that both halves
// apply to a message, so they cannot disagree: the phases a report may
// carry, its size limits and validation (validate.go), and the masking of
// URL credentials in everything a report says (redact.go).
package channelpb
