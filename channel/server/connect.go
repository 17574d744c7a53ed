package server

import (
	"context"
	"errors"
	"io"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/tunnel"
)

type stream = grpc.BidiStreamingServer[channelpb.AgentMessage, channelpb.HubMessage]

// Connect implements channelpb.AgentChannelServer: Hello, then reports and
// heartbeats up, Welcome, acks and "sync now" down, until the agent leaves,
// its token is revoked, it breaks the protocol, falls silent, or a newer
// stream of the same agent replaces it.
//
// A stream costs the hub two goroutines while the agent is connected: this
// handler, which only waits for the stream's end (it must return the
// status: gRPC has no other way to end a stream with one), and the one
// that reads and handles the agent's messages (a Recv cannot be
// interrupted without gRPC writing a status of its own). "Sync now" goes
// down on a goroutine that lives only while messages wait
// (session.offer), tunnel frames on their request's goroutine, acks on the
// reader's, and the timers are runtime timers (watch).
func (s *Server) Connect(st channelpb.AgentChannel_ConnectServer) error {
	who, ok := callerOf(st.Context())
	if !ok {
		return status.Error(codes.Unauthenticated, "a bearer token is required")
	}
	ctx, cancel := context.WithCancelCause(st.Context())
	defer cancel(nil)
	untrack, err := s.track(&cancel)
	if err != nil {
		return err
	}
	defer untrack()

	hello, err := s.awaitHello(ctx, st, who.agent)
	if err != nil {
		return err
	}
	sess := &session{
		agent:   who.agent,
		ctx:     ctx,
		cancel:  cancel,
		st:      st,
		max:     s.opts.SendQueue,
		sending: make(chan struct{}, 1),
	}
	// Nothing is sent or handled once the handler returns.
	defer sess.close()
	if slices.Contains(hello.GetFeatures(), channelpb.Feature_FEATURE_TUNNEL) {
		sess.mux = tunnel.NewMux(func(fctx context.Context, f *channelpb.TunnelFrame) error {
			err := sess.send(fctx, &channelpb.HubMessage{Msg: &channelpb.HubMessage_Tunnel{Tunnel: f}})
			switch {
			case err == nil:
				return nil
			case errors.Is(err, errStreamEnded):
				return tunnel.ErrClosed
			case fctx.Err() != nil:
				return context.Cause(fctx)
			default:
				cancel(err)
				return tunnel.ErrClosed
			}
		}, nil, s.opts.MaxTunnelStreams)
		// Every tunnelled request on this stream fails when it ends.
		defer sess.mux.Close(nil)
	}
	welcome := &channelpb.Welcome{
		HubVersion:       s.opts.HubVersion,
		HeartbeatSeconds: int32(s.opts.Heartbeat / time.Second),
	}
	if _, ok := s.opts.Sink.(EventSink); ok {
		welcome.Features = append(welcome.Features, channelpb.Feature_FEATURE_EVENTS)
	}
	// The Welcome goes first: SyncNow finds the session only once it is
	// registered, and the reader starts after.
	if err := sess.send(ctx, &channelpb.HubMessage{Msg: &channelpb.HubMessage_Welcome{Welcome: welcome}}); err != nil {
		return sendFailed(ctx, err)
	}
	if err := s.register(sess, hello); err != nil {
		return err
	}
	defer s.unregister(sess)
	s.log.Info("agent connected", "agent", who.agent, "version", hello.GetVersion(), "clusterUID", hello.GetClusterUid())

	sess.seen()
	defer s.watch(sess, who)()
	go s.read(sess)
	<-ctx.Done()
	// The Sink hears nothing more of this stream (the deferred
	// unregister calls Disconnected after this).
	sess.close()
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errAgentLeft):
		err = nil
	case errors.Is(cause, context.Canceled), errors.Is(cause, context.DeadlineExceeded):
		err = streamCause(ctx)
	default:
		err = cause
	}
	s.log.Info("agent disconnected", "agent", who.agent, "reason", status.Convert(err).Message(), "code", status.Code(err))
	return err
}

// errAgentLeft is the cause of a stream the agent closed (its Recv saw
// io.EOF): the stream ends with OK.
var errAgentLeft = errors.New("the agent closed the stream")

// read reads and handles the agent's messages until the stream ends, and
// then ends the stream's context with the cause, which Connect returns.
// Messages are decoded (offStackCodec) and handled off its stack.
func (s *Server) read(sess *session) {
	for {
		m, err := sess.st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errAgentLeft
			}
			sess.cancel(err)
			return
		}
		sess.seen()
		if _, beat := m.GetMsg().(*channelpb.AgentMessage_Heartbeat); beat {
			continue
		}
		// Handling goes deep (checks, the Sink, encoding the ack): off
		// this goroutine's stack, which would keep the size for good.
		if err := offStack(func() error { return sess.handling(func() error { return s.handle(sess.ctx, sess, m) }) }); err != nil {
			sess.cancel(err)
			return
		}
	}
}

// watch ends the stream when the agent falls silent for IdleHeartbeats
// heartbeats or its token no longer holds (checked every AuthRecheck),
// on a runtime timer: the check runs on the timer's own short-lived
// goroutine. stop ends the watch.
func (s *Server) watch(sess *session, who caller) (stop func()) {
	every := min(s.opts.AuthRecheck, s.opts.Heartbeat)
	nextAuth := time.Now().Add(s.opts.AuthRecheck)
	var t *time.Timer
	check := func() {
		if sess.ctx.Err() != nil {
			return
		}
		now := time.Now()
		if silent := now.Sub(time.Unix(0, sess.lastSeen.Load())); silent > channelpb.IdleHeartbeats*s.opts.Heartbeat {
			sess.cancel(status.Errorf(codes.Unavailable, "no message from the agent for %s", silent.Round(time.Second)))
			return
		}
		if !now.Before(nextAuth) {
			nextAuth = now.Add(s.opts.AuthRecheck)
			again, err := s.check(sess.ctx, who.token)
			if err != nil {
				sess.cancel(err)
				return
			}
			if again.agent != who.agent {
				sess.cancel(status.Error(codes.Unauthenticated, "the token now belongs to another agent"))
				return
			}
		}
		t.Reset(every)
	}
	// Armed only once t is set: the first check reads it.
	t = time.AfterFunc(time.Duration(1<<63-1), check)
	t.Reset(every)
	return func() { t.Stop() }
}

// handle acts on one message after the Hello, on a short-lived goroutine
// (see read).
func (s *Server) handle(ctx context.Context, sess *session, m *channelpb.AgentMessage) error {
	switch msg := m.GetMsg().(type) {
	case *channelpb.AgentMessage_Heartbeat:
		return nil
	case *channelpb.AgentMessage_Report:
		r := msg.Report
		if err := validReport(r); err != nil {
			return err
		}
		if _, err := s.opts.Sink.Report(ctx, sess.agent, r); err != nil {
			s.log.Error("storing a report failed", "agent", sess.agent, "namespace", r.GetNamespace(), "name", r.GetName(), "error", err)
			return status.Errorf(codes.Unavailable, "%s/%s: the hub could not store the report", r.GetNamespace(), r.GetName())
		}
		err := sess.send(ctx, &channelpb.HubMessage{Msg: &channelpb.HubMessage_Ack{Ack: &channelpb.Ack{
			Namespace:    r.GetNamespace(),
			Name:         r.GetName(),
			StateVersion: r.GetStateVersion(),
		}}})
		return sendFailed(ctx, err)
	case *channelpb.AgentMessage_Tunnel:
		if sess.mux == nil {
			return status.Error(codes.InvalidArgument, "a tunnel frame from an agent that did not announce the tunnel")
		}
		sess.mux.Deliver(msg.Tunnel)
		return nil
	case *channelpb.AgentMessage_Events:
		es, ok := s.opts.Sink.(EventSink)
		if !ok {
			return status.Error(codes.InvalidArgument, "warning events, but this hub's Welcome did not list FEATURE_EVENTS")
		}
		if err := msg.Events.Validate(); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if err := es.Events(ctx, sess.agent, msg.Events); err != nil {
			s.log.Error("storing warning events failed", "agent", sess.agent, "error", err)
			return status.Error(codes.Unavailable, "the hub could not keep the warning events")
		}
		return nil
	case *channelpb.AgentMessage_Hello:
		return status.Error(codes.InvalidArgument, "a second Hello on one stream")
	default:
		return status.Error(codes.InvalidArgument, "an empty or unknown message")
	}
}

// awaitHello waits for the first message, which must be a Hello from the
// agent the token was issued for, within HelloTimeout. A goroutine reads
// it, so the handler can end the stream while that Recv is pending.
func (s *Server) awaitHello(ctx context.Context, st stream, agent string) (*channelpb.Hello, error) {
	type result struct {
		m   *channelpb.AgentMessage
		err error
	}
	got := make(chan result, 1)
	go func() {
		m, err := st.Recv()
		got <- result{m, err}
	}()
	t := time.NewTimer(s.opts.HelloTimeout)
	defer t.Stop()
	var r result
	select {
	case <-ctx.Done():
		return nil, streamCause(ctx)
	case <-t.C:
		return nil, status.Errorf(codes.InvalidArgument, "no Hello within %s", s.opts.HelloTimeout)
	case r = <-got:
	}
	if r.err != nil {
		return nil, r.err
	}
	hello := r.m.GetHello()
	if hello == nil {
		return nil, status.Error(codes.InvalidArgument, "the first message must be a Hello")
	}
	if err := hello.Validate(); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if hello.GetAgentName() != agent {
		return nil, status.Errorf(codes.PermissionDenied,
			"an agent can only report for itself: the token is for agent %q, the Hello names %q", agent, hello.GetAgentName())
	}
	return hello, nil
}

// validReport checks what the hub relies on (channelpb's rules); a report
// that breaks them ends the stream with InvalidArgument and the reason.
func validReport(r *channelpb.SyncReport) error {
	if err := r.Validate(); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

// sendFailed is the stream's status after a failed send: the cause when
// the stream ended first.
func sendFailed(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, errStreamEnded) || ctx.Err() != nil {
		return streamCause(ctx)
	}
	return err
}

// streamCause is the status a cancelled stream ends with.
func streamCause(ctx context.Context) error {
	cause := context.Cause(ctx)
	if _, ok := status.FromError(cause); ok {
		return cause
	}
	return status.FromContextError(ctx.Err()).Err()
}
