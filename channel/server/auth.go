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

// check asks the Authenticator about token, on a goroutine of its own
// (offStack): the store's lookup goes deep, and the stream's goroutine
// runs it at the start and again every AuthRecheck.
func (s *Server) check(ctx context.Context, token string) (caller, error) {
	type result struct {
		agent string
		err   error
	}
	res := offStack(func() result {
		agent, err := s.opts.Authenticator.Authenticate(ctx, token)
		return result{agent, err}
	})
	agent, err := res.agent, res.err
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

// offStack runs f on a short-lived goroutine and waits for its result.
// A goroutine's stack keeps the size its deepest call grew it to (until
// a GC shrinks it, and the next deep call grows it again); a stream's
// goroutines live as long as the agent is connected, thousands at once,
// so the deep calls they make (the store, through the Authenticator and
// the Sink) run here instead, and their stacks stay small.
func offStack[T any](f func() T) T {
	c := make(chan T, 1)
	go func() { c <- f() }()
	return <-c
}
