package agent

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

type stream = grpc.BidiStreamingClient[channelpb.AgentMessage, channelpb.HubMessage]

// connect runs one session: dial, Hello, wait for the Welcome, then send
// and receive until the stream ends. welcomed says whether the hub
// accepted the agent.
func (c *Client) connect(ctx context.Context) (welcomed bool, err error) {
	conn, err := c.dial()
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	st, err := channelpb.NewAgentChannelClient(conn).Connect(ctx)
	if err != nil {
		return false, err
	}
	err = st.Send(&channelpb.AgentMessage{Msg: &channelpb.AgentMessage_Hello{Hello: &channelpb.Hello{
		AgentName:  c.opts.AgentName,
		Version:    c.opts.Version,
		ClusterUid: c.opts.ClusterUID,
		Features:   c.features(),
	}}})
	if err != nil {
		return false, recvError(st, err)
	}
	timer := time.AfterFunc(channelpb.WelcomeTimeout, func() {
		cancel(status.Error(codes.DeadlineExceeded, "no Welcome from the hub"))
	})
	first, err := st.Recv()
	timer.Stop()
	if err != nil {
		return false, causeOr(ctx, err)
	}
	w := first.GetWelcome()
	if w == nil {
		return false, status.Error(codes.Internal, "the hub's first message is not a Welcome")
	}

	session := c.session.Add(1)
	c.hubEvents.Store(slices.Contains(w.GetFeatures(), channelpb.Feature_FEATURE_EVENTS))
	c.up.Store(true)
	defer c.up.Store(false)
	hb := heartbeat(c.opts.Heartbeat, w)
	c.log.Info("connected to the hub", "hubVersion", w.GetHubVersion(), "heartbeat", hb, "pending", c.buf.len())

	// Tunnel frames go through the one sender, like reports: a gRPC
	// stream allows one sending goroutine.
	frames := make(chan *channelpb.AgentMessage)
	var mux *tunnel.Mux
	if c.opts.Tunnel != nil {
		mux = c.opts.Tunnel.NewMux(func(fctx context.Context, f *channelpb.TunnelFrame) error {
			select {
			case frames <- &channelpb.AgentMessage{Msg: &channelpb.AgentMessage_Tunnel{Tunnel: f}}:
				return nil
			case <-fctx.Done():
				return context.Cause(fctx)
			case <-ctx.Done():
				return tunnel.ErrClosed
			}
		})
		// The session's end cancels every request it carried.
		defer mux.Close(nil)
	}

	sendErr := make(chan error, 1)
	go func() {
		err := c.send(ctx, st, session, hb, frames)
		if err != nil && !errors.Is(err, io.EOF) {
			cancel(err)
		}
		sendErr <- err
	}()
	err = c.receive(st, mux)
	cancel(nil)
	if serr := <-sendErr; status.Code(err) == codes.Canceled && serr != nil && !errors.Is(serr, io.EOF) {
		err = serr
	}
	return true, err
}

// send drains the buffer whenever it has something due on this session
// and sends a heartbeat every hb.
func (c *Client) send(ctx context.Context, st stream, session uint64, hb time.Duration, frames <-chan *channelpb.AgentMessage) error {
	tick := time.NewTicker(hb)
	defer tick.Stop()
	for {
		for _, r := range c.buf.due(session) {
			if err := r.Validate(); err != nil {
				// The hub would end the stream over it, again on every
				// reconnect, and the reports behind it would never go.
				c.log.Error("report dropped: the hub would refuse it", "error", err)
				c.buf.ack(r.GetNamespace(), r.GetName(), r.GetStateVersion())
				continue
			}
			if err := st.Send(&channelpb.AgentMessage{Msg: &channelpb.AgentMessage_Report{Report: r}}); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.buf.notify:
		case f := <-frames:
			if err := st.Send(f); err != nil {
				return err
			}
		case b := <-c.eventq:
			// Queued for an earlier stream, perhaps to a hub that took
			// events: this one might not, and would end the stream.
			if !c.hubEvents.Load() {
				continue
			}
			if err := st.Send(&channelpb.AgentMessage{Msg: &channelpb.AgentMessage_Events{Events: b}}); err != nil {
				return err
			}
		case <-tick.C:
			err := st.Send(&channelpb.AgentMessage{Msg: &channelpb.AgentMessage_Heartbeat{
				Heartbeat: &channelpb.Heartbeat{SentUnixMs: time.Now().UnixMilli()},
			}})
			if err != nil {
				return err
			}
		}
	}
}

// receive handles acks, "sync now" and tunnel frames until the stream
// ends.
func (c *Client) receive(st stream, mux *tunnel.Mux) error {
	for {
		msg, err := st.Recv()
		if err != nil {
			return err
		}
		switch m := msg.Msg.(type) {
		case *channelpb.HubMessage_Ack:
			c.buf.ack(m.Ack.GetNamespace(), m.Ack.GetName(), m.Ack.GetStateVersion())
			if c.opts.OnAck != nil {
				c.opts.OnAck(m.Ack.GetNamespace(), m.Ack.GetName(), m.Ack.GetStateVersion())
			}
		case *channelpb.HubMessage_SyncNow:
			c.log.Info("sync now from the hub", "namespace", m.SyncNow.GetNamespace(), "name", m.SyncNow.GetName(),
				"repo", m.SyncNow.GetRepoUrl(), "ref", m.SyncNow.GetBranchOrTag(), "reason", m.SyncNow.GetReason())
			if c.opts.OnSyncNow != nil {
				for _, msg := range c.sources.resolve(m.SyncNow) {
					c.opts.OnSyncNow(msg)
				}
			}
		case *channelpb.HubMessage_Tunnel:
			if mux != nil {
				mux.Deliver(m.Tunnel)
			}
		default:
			// A repeated Welcome or a message from a newer hub: nothing to do.
		}
	}
}

// recvError returns the stream's status after a failed Send: Send only
// says io.EOF, Recv says why.
func recvError(st stream, err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := st.Recv(); rerr != nil {
			return rerr
		}
	}
	return err
}

// causeOr prefers the reason this side cancelled the stream.
func causeOr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && status.Code(err) == codes.Canceled {
		return cause
	}
	return err
}

// features lists what this agent announces in its Hello.
func (c *Client) features() []channelpb.Feature {
	if c.opts.Tunnel != nil {
		return []channelpb.Feature{channelpb.Feature_FEATURE_TUNNEL}
	}
	return nil
}
