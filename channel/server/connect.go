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

	in, recvErr := receive(ctx, st)
	hello, err := s.awaitHello(ctx, in, recvErr, who.agent)
	if err != nil {
		return err
	}
	sess := &session{
		agent:  who.agent,
		out:    make(chan *channelpb.HubMessage, s.opts.SendQueue),
		cancel: cancel,
		frames: make(chan *channelpb.HubMessage),
	}
	if slices.Contains(hello.GetFeatures(), channelpb.Feature_FEATURE_TUNNEL) {
		sess.mux = tunnel.NewMux(func(fctx context.Context, f *channelpb.TunnelFrame) error {
			select {
			case sess.frames <- &channelpb.HubMessage{Msg: &channelpb.HubMessage_Tunnel{Tunnel: f}}:
				return nil
			case <-fctx.Done():
				return context.Cause(fctx)
			case <-ctx.Done():
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
	sess.out <- &channelpb.HubMessage{Msg: &channelpb.HubMessage_Welcome{Welcome: welcome}}
	if err := s.register(sess, hello); err != nil {
		return err
	}
	defer s.unregister(sess)
	log := s.log.With("agent", who.agent)
	log.Info("agent connected", "version", hello.GetVersion(), "clusterUID", hello.GetClusterUid())

	err = s.serve(ctx, st, sess, who, in, recvErr)
	log.Info("agent disconnected", "reason", status.Convert(err).Message(), "code", status.Code(err))
	return err
}

// serve handles the agent's messages, the queue of messages down and the
// stream's timers until the stream ends; the error is the stream's status.
// It is the stream's only sender: one goroutine fewer per agent, and a
// slow agent slows only itself.
func (s *Server) serve(ctx context.Context, st stream, sess *session, who caller, in <-chan *channelpb.AgentMessage, recvErr <-chan error) error {
	tick := time.NewTicker(min(s.opts.AuthRecheck, s.opts.Heartbeat))
	defer tick.Stop()
	lastSeen := time.Now()
	nextAuth := time.Now().Add(s.opts.AuthRecheck)
	for {
		select {
		case <-ctx.Done():
			return streamCause(ctx)
		case err := <-recvErr:
			if ctx.Err() != nil {
				return streamCause(ctx)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case m := <-sess.out:
			if err := st.Send(m); err != nil {
				return err
			}
		case m := <-sess.frames:
			if err := st.Send(m); err != nil {
				return err
			}
		case m := <-in:
			lastSeen = time.Now()
			if err := s.handle(ctx, st, sess, m); err != nil {
				return err
			}
		case now := <-tick.C:
			if silent := now.Sub(lastSeen); silent > channelpb.IdleHeartbeats*s.opts.Heartbeat {
				return status.Errorf(codes.Unavailable, "no message from the agent for %s", silent.Round(time.Second))
			}
			if now.Before(nextAuth) {
				continue
			}
			nextAuth = now.Add(s.opts.AuthRecheck)
			again, err := s.check(ctx, who.token)
			if err != nil {
				return err
			}
			if again.agent != who.agent {
				return status.Error(codes.Unauthenticated, "the token now belongs to another agent")
			}
		}
	}
}

// handle acts on one message after the Hello.
func (s *Server) handle(ctx context.Context, st stream, sess *session, m *channelpb.AgentMessage) error {
	switch msg := m.GetMsg().(type) {
	case *channelpb.AgentMessage_Heartbeat:
		return nil
	case *channelpb.AgentMessage_Report:
		r := msg.Report
		if err := validReport(r); err != nil {
			return err
		}
		if err := offStack(func() error { _, err := s.opts.Sink.Report(ctx, sess.agent, r); return err }); err != nil {
			s.log.Error("storing a report failed", "agent", sess.agent, "namespace", r.GetNamespace(), "name", r.GetName(), "error", err)
			return status.Errorf(codes.Unavailable, "%s/%s: the hub could not store the report", r.GetNamespace(), r.GetName())
		}
		return st.Send(&channelpb.HubMessage{Msg: &channelpb.HubMessage_Ack{Ack: &channelpb.Ack{
			Namespace:    r.GetNamespace(),
			Name:         r.GetName(),
			StateVersion: r.GetStateVersion(),
		}}})
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
// agent the token was issued for.
func (s *Server) awaitHello(ctx context.Context, in <-chan *channelpb.AgentMessage, recvErr <-chan error, agent string) (*channelpb.Hello, error) {
	t := time.NewTimer(s.opts.HelloTimeout)
	defer t.Stop()
	var m *channelpb.AgentMessage
	select {
	case <-ctx.Done():
		return nil, streamCause(ctx)
	case err := <-recvErr:
		if ctx.Err() != nil {
			return nil, streamCause(ctx)
		}
		return nil, err
	case <-t.C:
		return nil, status.Errorf(codes.InvalidArgument, "no Hello within %s", s.opts.HelloTimeout)
	case m = <-in:
	}
	hello := m.GetHello()
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

// receive reads the stream on its own goroutine, so the handler can end
// the stream while a Recv is pending.
func receive(ctx context.Context, st stream) (<-chan *channelpb.AgentMessage, <-chan error) {
	in := make(chan *channelpb.AgentMessage)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case in <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return in, errc
}

// streamCause is the status a cancelled stream ends with.
func streamCause(ctx context.Context) error {
	cause := context.Cause(ctx)
	if _, ok := status.FromError(cause); ok {
		return cause
	}
	return status.FromContextError(ctx.Err()).Err()
}
