package server

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// caller is who made a call, as the token says.
type caller struct {
	token string
	agent string
}

type callerKey struct{}

// authStream authenticates every streaming call before its handler runs,
// and counts it against its agent's MaxStreamsPerAgent.
func (s *Server) authStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	c, err := s.authenticate(ss.Context())
	if err != nil {
		return err
	}
	release, err := s.admit(c.agent)
	if err != nil {
		s.log.Info("agent stream refused", "agent", c.agent, "error", status.Convert(err).Message())
		return err
	}
	defer release()
	return handler(srv, &authedStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callerKey{}, c)})
}

// authUnary authenticates every unary call (there are none yet).
func (s *Server) authUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	c, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return handler(context.WithValue(ctx, callerKey{}, c), req)
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }

// authenticate reads the bearer token and asks the Authenticator whose it
// is. The token never appears in an error or a log line.
func (s *Server) authenticate(ctx context.Context) (caller, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return caller{}, status.Error(codes.Unauthenticated, "a bearer token is required")
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return caller{}, status.Error(codes.Unauthenticated, "a bearer token is required")
	}
	leave, ok := s.enter()
	if !ok {
		return caller{}, status.Error(codes.ResourceExhausted, "the hub is busy; retry later")
	}
	defer leave()
	return s.check(ctx, token)
}

// check asks the Authenticator about token.
func (s *Server) check(ctx context.Context, token string) (caller, error) {
	agent, err := s.opts.Authenticator.Authenticate(ctx, token)
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
			return caller{}, err
		}
		s.log.Info("agent token refused", "error", err)
		return caller{}, status.Error(codes.Unauthenticated, "the token is invalid or revoked")
	}
	if agent == "" {
		return caller{}, status.Error(codes.Unauthenticated, "the token is invalid or revoked")
	}
	return caller{token: token, agent: agent}, nil
}

// callerOf is the caller the interceptor put into ctx.
func callerOf(ctx context.Context) (caller, bool) {
	c, ok := ctx.Value(callerKey{}).(caller)
	return c, ok
}
