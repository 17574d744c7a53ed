package testenv

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"tether.dev/tether/channel/channelpb"
)

// RawStream opens the agent channel's Connect stream by hand, over h2c to
// addr with token (none when empty), so that a test can send what a real
// agent never would. close ends the stream and its connection.
func RawStream(addr, token string) (st channelpb.AgentChannel_ConnectClient, close func(), err error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	close = func() {
		cancel()
		_ = conn.Close()
	}
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	if st, err = channelpb.NewAgentChannelClient(conn).Connect(ctx); err != nil {
		close()
		return nil, nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return st, close, nil
}
