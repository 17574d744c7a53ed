package hub

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/server"
	"tether.dev/tether/channel/tunnel"
	"tether.dev/tether/hub/replica"
	"tether.dev/tether/hub/store"
)

// ReplicaOptions configure a hub that shares its PostgreSQL database with
// other hub replicas behind one address.
type ReplicaOptions struct {
	// PeerURL is where the other replicas reach this one
	// (http://POD_IP:8080): a tunnelled kubectl request that arrives at
	// another replica is passed on to it when it holds the agent. Empty:
	// such requests fail with 503 "agent … is connected to another hub
	// replica" (sync now still reaches the agent).
	PeerURL string
	// PeerCA, when set, is the certificate authority the replicas'
	// https:// peer URLs are served under (a private CA, as a
	// cert-manager Issuer makes); nil trusts the system's roots.
	PeerCA *x509.CertPool
	// Heartbeat is how often the replica says it is alive (default 2 s);
	// TTL how long the others wait before they give it up as dead and
	// its agents as disconnected (default five heartbeats).
	Heartbeat, TTL time.Duration
}

const (
	defaultReplicaHeartbeat = 2 * time.Second
	// elsewhereFor is how long a replica trusts what it read about an
	// agent held by another: the page and badges ask once per agent.
	elsewhereFor = time.Second
)

// replicas is a hub's part in a set of replicas on one database.
type replicas struct {
	id, url   string
	heartbeat time.Duration
	ttl       time.Duration
	fwd       replica.Forwarder
	ctx       context.Context // ends when the replica leaves
	cancel    context.CancelFunc
	done      sync.WaitGroup
	sweep     chan struct{} // asks syncNowSweeper for a sweep

	mu        sync.Mutex
	elsewhere map[string]elsewhere
	stopping  bool // no new goBackground work
}

// syncNowTimeout bounds one round of "sync now" bookkeeping in the
// database (record, claim, sweep).
const syncNowTimeout = 5 * time.Second

// sweepSoon asks for a sweep of the recorded "sync now" requests.
func (r *replicas) sweepSoon() {
	select {
	case r.sweep <- struct{}{}:
	default: // one is asked for already
	}
}

// goBackground runs f on its own goroutine, which the replica's leaving
// waits for, unless it is leaving already.
func (r *replicas) goBackground(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return
	}
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		f()
	}()
}

type elsewhere struct {
	connected bool
	until     time.Time
}

// StartReplicas makes the hub one of several replicas on its PostgreSQL
// database: it registers itself with a heartbeat, records which agents'
// streams it holds (ChannelSink), LISTENs for "sync now" from its peers
// and for word that the commit-status outbox has work (which the leader
// acts on), and routes what it cannot serve itself to the replica that
// can. A "sync now" for an agent another replica holds is recorded in
// the database before it is NOTIFYed, and delivered at least once (see
// syncNowVia). Commit statuses themselves go through the database:
// whichever replica stores a report queues its status in the outbox,
// and the leader posts from there. On SQLite it does nothing (one
// replica); a PeerURL there is an error. Close leaves the set.
func (s *Server) StartReplicas(ctx context.Context, o ReplicaOptions) error {
	if s.store.Dialect() != "postgres" {
		if o.PeerURL != "" {
			return errors.New("hub replicas: a peer URL needs a PostgreSQL database (--db postgres://…): replicas share it")
		}
		return nil
	}
	if o.PeerURL != "" {
		u, err := url.Parse(o.PeerURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return fmt.Errorf("hub replicas: peer URL %q: want http(s)://HOST:PORT", o.PeerURL)
		}
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = defaultReplicaHeartbeat
	}
	if o.TTL <= o.Heartbeat {
		o.TTL = 5 * o.Heartbeat
	}
	id := s.opt.HubID
	if id == "" {
		id = hubID()
	}
	r := &replicas{id: id, url: o.PeerURL, heartbeat: o.Heartbeat, ttl: o.TTL,
		fwd: replica.Forwarder{Self: id}, elsewhere: map[string]elsewhere{}, sweep: make(chan struct{}, 1)}
	if o.PeerCA != nil {
		r.fwd.Transport = replica.PeerTransport(o.PeerCA)
	}
	if _, err := s.store.ReplicaHeartbeat(ctx, r.id, r.url, r.ttl); err != nil {
		return fmt.Errorf("hub replicas: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	r.ctx, r.cancel = rctx, cancel
	listening := make(chan struct{})
	var once sync.Once
	r.done.Add(3)
	go func() {
		defer r.done.Done()
		replica.Listen(rctx, s.opt.DB, s.log, func() {
			once.Do(func() { close(listening) })
			s.log.Info("hub replicas: listening", "replica", r.id)
			// NOTIFYs sent while this replica was not listening were
			// lost; their requests wait in the database.
			r.sweepSoon()
		}, s.replicaMessage)
	}()
	go func() {
		defer r.done.Done()
		s.syncNowSweeper(r)
	}()
	go func() {
		defer r.done.Done()
		s.replicaHeartbeats(rctx, r)
	}()
	s.mu.Lock()
	s.replicas = r
	s.mu.Unlock()
	// A peer may NOTIFY this replica as soon as an agent connects here.
	select {
	case <-listening:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
		s.log.Warn("hub replicas: not listening yet; sync now from other replicas waits for it")
	}
	s.log.Info("hub replica", "replica", r.id, "peerURL", r.url)
	return nil
}

// replicaSet is the hub's replicas, nil on SQLite.
func (s *Server) replicaSet() *replicas {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replicas
}

// stopReplicas leaves the set: the others no longer route to this hub.
func (s *Server) stopReplicas() {
	r := s.replicaSet()
	if r == nil {
		return
	}
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	r.cancel()
	r.done.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.ReplicaLeft(ctx, r.id); err != nil {
		s.log.Error("hub replicas: leaving", "error", err)
	}
}

// replicaHeartbeats keeps the replica alive in the database. When the
// others gave it up (its heartbeats did not arrive: the database was
// away), it claims the streams it holds again.
func (s *Server) replicaHeartbeats(ctx context.Context, r *replicas) {
	t := time.NewTicker(r.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, r.heartbeat)
		joined, err := s.store.ReplicaHeartbeat(hctx, r.id, r.url, r.ttl)
		if err != nil {
			cancel()
			s.log.Error("hub replicas: heartbeat", "error", err)
			continue
		}
		if joined {
			s.mu.Lock()
			agents := make([]string, 0, len(s.streams))
			for a := range s.streams {
				agents = append(agents, a)
			}
			s.mu.Unlock()
			s.log.Warn("hub replicas: rejoined after missed heartbeats; claiming agents again", "agents", len(agents))
			for _, a := range agents {
				if err := s.store.AgentClaimed(hctx, a, r.id); err != nil {
					s.log.Error("hub replicas: claiming agent", "agent", a, "error", err)
				}
			}
		}
		cancel()
	}
}

// disconnectAtStart marks every agent disconnected when the hub starts
// alone on its database (SQLite): no stream can be open yet. Replicas on
// PostgreSQL leave the agents of the others alone; the heartbeats tell
// which are held by a live replica.
func disconnectAtStart(ctx context.Context, st *store.Store) error {
	if st.Dialect() == "postgres" {
		return nil
	}
	return st.DisconnectAll(ctx)
}

// syncNowVia sends msg to agent through d when its stream is here, and
// otherwise records it in the database for the replica that holds it and
// NOTIFYs that replica. The record makes it at least once: a NOTIFY is
// lost when the holder's LISTEN connection is down, and then the holder
// delivers the request when it listens again; when the holder dies
// first, the replica the agent connects to next delivers it. A request
// no one delivers within store.SyncNowKeep is dropped (the agent's poll
// has done its work). The record costs one more round trip to the
// database than the NOTIFY alone.
func (s *Server) syncNowVia(r *replicas, d Dispatcher, agent string, msg *channelpb.SyncNow) error {
	err := d.SyncNow(agent, msg)
	if !errors.Is(err, server.ErrNotConnected) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), syncNowTimeout)
	defer cancel()
	peer, lerr := s.store.AgentReplica(ctx, agent, r.ttl)
	switch {
	case errors.Is(lerr, store.ErrNotFound) || (lerr == nil && peer.ID == r.id):
		return err
	case lerr != nil:
		return fmt.Errorf("agent %s: finding its hub replica: %w", agent, lerr)
	}
	return s.sendSyncNow(ctx, store.PendingSyncNow{Agent: agent, Replica: peer.ID, Msg: msg})
}

// sendSyncNow records p, addressed to p.Replica, and NOTIFYs that
// replica.
func (s *Server) sendSyncNow(ctx context.Context, p store.PendingSyncNow) error {
	// The payload is checked before the record: one that cannot be sent
	// leaves none behind.
	if _, err := replica.SyncNowMessage(p.Replica, p.Agent, 0, p.Msg); err != nil {
		return err
	}
	id, err := s.store.AddSyncNow(ctx, p)
	if err != nil {
		return fmt.Errorf("agent %s: sync now through replica %s: %w", p.Agent, p.Replica, err)
	}
	payload, err := replica.SyncNowMessage(p.Replica, p.Agent, id, p.Msg)
	if err != nil {
		return err
	}
	if err := s.store.Notify(ctx, replica.Channel, payload); err != nil {
		return fmt.Errorf("agent %s: sync now through replica %s (recorded: it goes when that replica listens again or the agent reconnects): %w", p.Agent, p.Replica, err)
	}
	return nil
}

// replicaMessage acts on a notification from a peer: a "sync now" for an
// agent this replica holds, or word that a commit status was queued (the
// poster reads the outbox if this replica leads).
func (s *Server) replicaMessage(payload string) {
	r := s.replicaSet()
	m, msg, err := replica.Decode(payload)
	if err != nil {
		s.log.Warn("hub replicas: ignoring a notification", "error", err)
		return
	}
	switch m.Kind {
	case replica.KindSyncNow:
		if r == nil || m.To != r.id {
			return
		}
		if m.ID == 0 { // from a replica that does not record them
			if d := s.currentDispatcher(); d != nil {
				if err := d.SyncNow(m.Agent, msg); err != nil {
					s.log.Info("hub replicas: sync now from a peer not delivered", "agent", m.Agent, "error", err)
				}
			}
			return
		}
		ctx, cancel := context.WithTimeout(r.ctx, syncNowTimeout)
		defer cancel()
		if s.deliverSyncNow(ctx, r, store.PendingSyncNow{ID: m.ID, Agent: m.Agent, Replica: m.To, Msg: msg}) != nil {
			r.sweepSoon()
		}
	case replica.KindOutbox:
		if s.Leading() {
			s.poster.Wake()
		}
	}
}

// currentDispatcher is the channel server, nil until SetDispatcher.
func (s *Server) currentDispatcher() Dispatcher {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dispatcher
}

// deliverSyncNow claims request p and sends it on the agent's stream
// here. A request another replica claimed first is left to it. One this
// replica claimed and cannot deliver (the stream here has gone) is
// recorded again for the agent's next holder: NOTIFYed to it when
// another replica holds the agent now, else waiting for the agent's next
// connection. An error (logged) is the database's: an unclaimed request
// stays recorded for a sweep to retry; a claimed one not recorded again
// is lost.
func (s *Server) deliverSyncNow(ctx context.Context, r *replicas, p store.PendingSyncNow) error {
	d := s.currentDispatcher()
	if d == nil {
		return nil
	}
	claimed, err := s.store.ClaimSyncNow(ctx, p.ID)
	if err != nil {
		s.log.Error("hub replicas: sync now", "agent", p.Agent, "error", err)
		return err
	}
	if !claimed {
		return nil
	}
	err = d.SyncNow(p.Agent, p.Msg)
	if err == nil {
		return nil
	}
	s.log.Info("hub replicas: sync now not delivered here; passing it on", "agent", p.Agent, "error", err)
	p.Replica = ""
	if peer, err := s.store.AgentReplica(ctx, p.Agent, r.ttl); err == nil && peer.ID != r.id {
		p.Replica = peer.ID
		err = s.sendSyncNow(ctx, p)
	} else {
		_, err = s.store.AddSyncNow(ctx, p)
	}
	if err != nil {
		s.log.Error("hub replicas: passing a sync now on", "agent", p.Agent, "error", err)
	}
	return err
}

// syncNowSweeper sweeps when asked (sweepSoon: each time the LISTEN
// connection is in place, and after a delivery failed on the database),
// and tries again with backoff until a sweep succeeds: after PostgreSQL
// restarts, the first statements on the pool's old connections fail.
func (s *Server) syncNowSweeper(r *replicas) {
	const first, most = 100 * time.Millisecond, 5 * time.Second
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.sweep:
		}
		for wait := first; s.sweepSyncNows(r) != nil; wait = min(2*wait, most) {
			t := time.NewTimer(wait)
			select {
			case <-r.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// sweepSyncNows delivers the recorded requests for the agents whose
// streams this replica holds, whoever they were addressed to: their
// NOTIFYs may have been lost while this replica was not listening.
func (s *Server) sweepSyncNows(r *replicas) error {
	ctx, cancel := context.WithTimeout(r.ctx, syncNowTimeout)
	defer cancel()
	ps, err := s.store.DeliverableSyncNows(ctx, "")
	if err != nil {
		s.log.Error("hub replicas: sync now sweep", "error", err)
		return err
	}
	s.mu.Lock()
	held := ps[:0]
	for _, p := range ps {
		if s.streams[p.Agent] > 0 {
			held = append(held, p)
		}
	}
	s.mu.Unlock()
	var failed error
	for _, p := range held {
		if err := s.deliverSyncNow(ctx, r, p); err != nil {
			failed = err
		}
	}
	if len(held) > 0 {
		s.log.Info("hub replicas: sync now sweep", "requests", len(held), "failed", failed != nil)
	}
	return failed
}

// connectedElsewhere says whether another replica holds agent's stream
// (always false on SQLite).
func (s *Server) connectedElsewhere(agent string) bool {
	r := s.replicaSet()
	if r == nil {
		return false
	}
	now := time.Now()
	r.mu.Lock()
	e, ok := r.elsewhere[agent]
	r.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.connected
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	peer, err := s.store.AgentReplica(ctx, agent, r.ttl)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("hub replicas: agent's replica", "agent", agent, "error", err)
	}
	e = elsewhere{connected: err == nil && peer.ID != r.id, until: now.Add(elsewhereFor)}
	r.mu.Lock()
	if len(r.elsewhere) > 100_000 {
		clear(r.elsewhere)
	}
	r.elsewhere[agent] = e
	r.mu.Unlock()
	return e.connected
}

// ChannelSink is what the channel server calls (Authenticator, Sink,
// EventSink): the hub itself, and on PostgreSQL also the record of which
// replica holds each agent's stream.
func (s *Server) ChannelSink() server.Sink { return replicaSink{s} }

// replicaSink is the hub's Sink with the replicas' bookkeeping.
type replicaSink struct{ *Server }

// Connected records the stream, and this replica as its holder.
func (rs replicaSink) Connected(agent string, hello *channelpb.Hello) {
	r := rs.replicaSet()
	if r == nil {
		rs.Server.Connected(agent, hello)
		return
	}
	rs.countStream(agent, 1)
	if err := rs.store.AgentConnectedAt(context.Background(), agent, hello.GetVersion(), hello.GetClusterUid(), r.id); err != nil {
		rs.log.Error("cannot record agent connection", "agent", agent, "error", err)
	}
	// A "sync now" recorded for the agent's previous holder (which died
	// or lost it before delivering) goes on the new stream; not from
	// this call, which the channel server makes before it returns the
	// stream to senders.
	r.goBackground(func() {
		ctx, cancel := context.WithTimeout(r.ctx, syncNowTimeout)
		defer cancel()
		ps, err := rs.store.DeliverableSyncNows(ctx, agent)
		if err != nil {
			rs.log.Error("hub replicas: sync now for a connecting agent", "agent", agent, "error", err)
			r.sweepSoon()
			return
		}
		for _, p := range ps {
			if rs.deliverSyncNow(ctx, r, p) != nil {
				r.sweepSoon()
			}
		}
	})
}

// Disconnected records the end of the agent's last stream here, unless
// the agent is held by another replica by now.
func (rs replicaSink) Disconnected(agent string) {
	r := rs.replicaSet()
	if r == nil {
		rs.Server.Disconnected(agent)
		return
	}
	if !rs.countStream(agent, -1) {
		return
	}
	if err := rs.store.AgentDisconnectedFrom(context.Background(), agent, r.id); err != nil {
		rs.log.Error("cannot record agent disconnection", "agent", agent, "error", err)
	}
}

// routeProxy serves /k8s-proxy/{agent}/...: here when this replica holds
// the agent (or the request was forwarded to it already), else passed on
// as it came to the replica that holds it, once the caller's token is
// known to carry the proxy action (so a stranger cannot make replicas
// call each other). The peer checks the token again, as for any request.
func (s *Server) routeProxy(w http.ResponseWriter, r *http.Request) {
	rs := s.replicaSet()
	if rs == nil || r.Header.Get(replica.HopHeader) != "" {
		s.proxy(w, r)
		return
	}
	agent := r.PathValue("agent")
	s.mu.Lock()
	tunnels := s.tunnels
	s.mu.Unlock()
	if tunnels != nil {
		if _, err := tunnels.Tunnel(agent); !errors.Is(err, server.ErrNotConnected) {
			s.proxy(w, r)
			return
		}
	}
	if p, err := s.principals.Principal(r.Context(), bearer(r)); err != nil || !p.Can(ActionProxy) {
		s.proxy(w, r) // answers 401 or 403 as to a direct request
		return
	}
	peer, err := s.store.AgentReplica(r.Context(), agent, rs.ttl)
	if err != nil || peer.ID == rs.id {
		s.proxy(w, r)
		return
	}
	if peer.URL == "" {
		tunnel.WriteStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable",
			"agent "+agent+" is connected to another hub replica, which has no peer URL")
		return
	}
	s.log.Debug("proxy passed to the replica that holds the agent", "agent", agent, "replica", peer.ID)
	rs.fwd.Forward(w, r, peer.URL)
}
