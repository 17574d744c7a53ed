package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/tunnel"
)

var (
	errReplaced = status.Error(codes.Aborted, "replaced by a newer stream of the same agent")
	errShutdown = status.Error(codes.Unavailable, "the hub is shutting down")
)

// session is one agent's open stream.
type session struct {
	agent  string
	id     uint64
	ctx    context.Context // the stream's; cancel ends it
	cancel func(cause error)
	st     stream
	// mux is nil for an agent without the tunnel.
	mux *tunnel.Mux
	// lastSeen is when the agent's last message came, in Unix nanoseconds.
	lastSeen atomic.Int64

	// handle is held while a message is handled; once closed, none is.
	handle sync.Mutex
	ended  bool

	// sending is the stream's send lock (a token, so a tunnel frame can
	// stop waiting for it): gRPC allows one sender at a time. closed,
	// under it, says the handler returned and nothing more may be sent.
	sending chan struct{}
	closed  bool

	// mu guards the "sync now" queue: at most max messages wait, and a
	// goroutine drains them while there are any.
	mu       sync.Mutex
	queue    []*channelpb.HubMessage
	max      int
	draining bool
}

// errStreamEnded is what send returns once the stream has ended.
var errStreamEnded = errors.New("the stream ended")

// send sends m down the stream, waiting for the send lock until wait or
// the stream ends. It fails with errStreamEnded once the stream ended,
// with wait's cause when wait ends first, or with the stream's error.
func (sess *session) send(wait context.Context, m *channelpb.HubMessage) error {
	select {
	case sess.sending <- struct{}{}:
	case <-sess.ctx.Done():
		return errStreamEnded
	case <-wait.Done():
		return context.Cause(wait)
	}
	defer func() { <-sess.sending }()
	if sess.closed {
		return errStreamEnded
	}
	return sess.st.Send(m)
}

// close ends the stream's context, waits for a message being handled
// and a send in progress, and refuses every later one. A send that gRPC's
// flow control holds (an agent that stopped reading) is waited for, as
// when the handler sent everything itself. The handler calls close
// before it unregisters and returns; again is a no-op.
func (sess *session) close() {
	sess.cancel(nil)
	sess.handle.Lock()
	sess.ended = true
	sess.handle.Unlock()
	sess.sending <- struct{}{}
	sess.closed = true
	<-sess.sending
}

// handling runs f, one of the agent's messages, unless the handler has
// returned: the Sink hears nothing of a stream after it ended.
func (sess *session) handling(f func() error) error {
	sess.handle.Lock()
	defer sess.handle.Unlock()
	if sess.ended || sess.ctx.Err() != nil {
		return errStreamEnded
	}
	return f()
}

// seen notes that the agent said something.
func (sess *session) seen() { sess.lastSeen.Store(time.Now().UnixNano()) }

// ErrNoTunnel is returned by Tunnel for an agent that does not serve the
// tunnel (an older agent, or one started without it).
var ErrNoTunnel = errors.New("the agent does not serve the Kubernetes API tunnel (upgrade it)")

// Tunnel returns the multiplexer of the agent's open stream, on which the
// hub opens tunnelled requests. It fails with ErrNotConnected or
// ErrNoTunnel.
func (s *Server) Tunnel(agent string) (*tunnel.Mux, error) {
	sess := s.current(agent)
	if sess == nil {
		return nil, fmt.Errorf("agent %q: %w", agent, ErrNotConnected)
	}
	if sess.mux == nil {
		return nil, fmt.Errorf("agent %q: %w", agent, ErrNoTunnel)
	}
	return sess.mux, nil
}

// register makes sess the agent's stream, ending the one it replaces, and
// tells the Sink. It fails once the server is stopping.
func (s *Server) register(sess *session, hello *channelpb.Hello) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return errShutdown
	}
	s.nextID++
	sess.id = s.nextID
	sl := s.slots[sess.agent]
	if sl == nil {
		sl = &slot{}
		s.slots[sess.agent] = sl
	}
	s.mu.Unlock()

	sl.mu.Lock()
	defer sl.mu.Unlock()
	if old := sl.cur; old != nil {
		old.cancel(errReplaced)
		s.log.Info("agent stream replaced by a newer one", "agent", sess.agent)
	}
	sl.cur = sess
	offStack(func() struct{} { s.opts.Sink.Connected(sess.agent, hello); return struct{}{} })
	return nil
}

// unregister forgets sess unless a newer stream replaced it already.
func (s *Server) unregister(sess *session) {
	s.mu.Lock()
	sl := s.slots[sess.agent]
	s.mu.Unlock()
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.cur != sess {
		return
	}
	sl.cur = nil
	s.opts.Sink.Disconnected(sess.agent)
}

// current is the agent's open stream, or nil.
func (s *Server) current(agent string) *session {
	s.mu.Lock()
	sl := s.slots[agent]
	s.mu.Unlock()
	if sl == nil {
		return nil
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.cur
}

// sessions lists every open stream.
func (s *Server) sessions() []*session {
	s.mu.Lock()
	slots := make([]*slot, 0, len(s.slots))
	for _, sl := range s.slots {
		slots = append(slots, sl)
	}
	s.mu.Unlock()
	var out []*session
	for _, sl := range slots {
		sl.mu.Lock()
		if sl.cur != nil {
			out = append(out, sl.cur)
		}
		sl.mu.Unlock()
	}
	return out
}

// SyncNow queues "sync now" for one agent. It fails with ErrNotConnected
// when the agent has no stream, and when its queue is full.
func (s *Server) SyncNow(agent string, msg *channelpb.SyncNow) error {
	sess := s.current(agent)
	if sess == nil {
		return fmt.Errorf("agent %q: %w", agent, ErrNotConnected)
	}
	if !sess.offer(&channelpb.HubMessage{Msg: &channelpb.HubMessage_SyncNow{SyncNow: msg}}) {
		return fmt.Errorf("agent %q: send queue full, sync now dropped", agent)
	}
	return nil
}

// Broadcast queues msg for every connected agent (each agent picks the
// GitSyncs it concerns, by repo_url and branch_or_tag) and returns how many
// got it.
func (s *Server) Broadcast(msg *channelpb.SyncNow) int {
	n := 0
	for _, sess := range s.sessions() {
		if sess.offer(&channelpb.HubMessage{Msg: &channelpb.HubMessage_SyncNow{SyncNow: msg}}) {
			n++
		} else {
			s.log.Warn("send queue full, sync now dropped", "agent", sess.agent)
		}
	}
	return n
}

// ConnectedAgents lists the agents with an open stream, sorted.
func (s *Server) ConnectedAgents() []string {
	var names []string
	for _, sess := range s.sessions() {
		names = append(names, sess.agent)
	}
	slices.Sort(names)
	return names
}

// offer queues m without blocking, and starts the queue's drain unless
// it runs; it fails when max messages wait already.
func (sess *session) offer(m *channelpb.HubMessage) bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if len(sess.queue) >= sess.max {
		return false
	}
	sess.queue = append(sess.queue, m)
	if !sess.draining {
		sess.draining = true
		go sess.drain()
	}
	return true
}

// drain sends the queued messages in order and ends when the queue is
// empty; a failed send ends the stream (and the drain for good: nothing
// more goes down it).
func (sess *session) drain() {
	for {
		sess.mu.Lock()
		if len(sess.queue) == 0 {
			sess.queue = nil
			sess.draining = false
			sess.mu.Unlock()
			return
		}
		m := sess.queue[0]
		sess.queue[0] = nil
		sess.queue = sess.queue[1:]
		sess.mu.Unlock()
		if err := sess.send(sess.ctx, m); err != nil {
			if !errors.Is(err, errStreamEnded) {
				sess.cancel(err)
			}
			return
		}
	}
}
