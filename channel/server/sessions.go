package server

import (
	"errors"
	"fmt"
	"slices"

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
	out    chan *channelpb.HubMessage
	cancel func(cause error)
	// frames carries tunnel frames down; the stream's one sender takes
	// them. mux is nil for an agent without the tunnel.
	frames chan *channelpb.HubMessage
	mux    *tunnel.Mux
}

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

// offer queues m without blocking.
func (sess *session) offer(m *channelpb.HubMessage) bool {
	select {
	case sess.out <- m:
		return true
	default:
		return false
	}
}
