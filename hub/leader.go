package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"tether.dev/tether/hub/store"
)

// leaderLease names the lease that elects, among the hubs sharing one
// database, the one that does leader-only work: retention, and posting the
// commit statuses that every hub queues in the database's outbox (package
// hub/status). A new leader wakes its poster at once; statuses queued
// while no hub led wait in the outbox, and one a dead leader claimed is
// checked against the Git host before it is posted again.
const leaderLease = "hub-leader"

const (
	defaultLeaseTTL = 30 * time.Second
	// pruneEvery is how often the leader deletes history older than the
	// retention: often enough that nothing outstays it by much.
	pruneEvery = time.Hour
)

// leader is a hub's part in the election: whether it holds the lease now,
// and the leader-only work it runs while it does.
type leader struct {
	lease   *store.Lease
	leading *atomic.Bool // shared with the poster, which posts while set
	// mu serialises steps: the loop's, and a test's.
	mu        sync.Mutex
	lastPrune time.Time
	cancel    context.CancelFunc
	done      chan struct{}
}

// hubID names this hub process in the lease: host, pid and a random
// suffix, so two hubs on one host, or a restarted one, never share it.
func hubID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
}

// startLeader takes part in the election as id, keeping leading up to
// date: it asks for the lease once before returning (so a lone hub leads
// from its first report on), then in the background runs a step at once
// (the first retention pass, which may take a while on a large database)
// and every third of the lease's TTL.
func (s *Server) startLeader(id string, leading *atomic.Bool) {
	ttl := s.opt.LeaseTTL
	if ttl <= 0 {
		ttl = defaultLeaseTTL
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &leader{lease: s.store.Lease(leaderLease, id, ttl), leading: leading, cancel: cancel, done: make(chan struct{})}
	s.leader = l
	l.mu.Lock()
	s.acquire(ctx)
	l.mu.Unlock()
	go func() {
		defer close(l.done)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		now := time.Now()
		for {
			s.leaderStep(ctx, now)
			select {
			case <-ctx.Done():
				return
			case now = <-t.C:
			}
		}
	}()
}

// stopLeader ends the election loop and gives the lease up, so another
// hub takes over at once rather than when it expires.
func (s *Server) stopLeader() {
	s.leader.cancel()
	<-s.leader.done
	// Released whether or not the flag says this hub leads: a step the
	// cancel cut short clears the flag while the lease is still this
	// hub's. Release changes nothing when another hub holds it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.leader.lease.Release(ctx); err != nil {
		s.log.Error("hub leader: releasing the lease", "error", err)
	}
}

// leaderStep renews or asks for the lease and, while this hub holds it,
// runs retention when it is due. A hub that cannot reach the database
// does not know whether it still holds the lease, so it stops leading.
func (s *Server) leaderStep(ctx context.Context, now time.Time) {
	l := s.leader
	l.mu.Lock()
	defer l.mu.Unlock()
	held := s.acquire(ctx)
	if !held || s.opt.Retention <= 0 || now.Sub(l.lastPrune) < pruneEvery {
		return
	}
	l.lastPrune = now
	before := now.Add(-s.opt.Retention)
	p, err := s.store.Prune(ctx, before)
	if err != nil {
		s.log.Error("retention", "error", err)
		return
	}
	if p.QueuedStatuses > 0 {
		s.log.Warn("retention: commit statuses queued before it and never posted dropped", "count", p.QueuedStatuses)
	}
	s.log.Info("retention", "before", before.UTC().Format(time.RFC3339), "revisions", p.Revisions,
		"commitStatuses", p.CommitStatuses, "gitsyncs", p.GitSyncs, "events", p.Events, "sessions", p.Sessions, "syncNows", p.SyncNows)
}

// acquire renews or asks for the lease and says whether this hub leads.
func (s *Server) acquire(ctx context.Context) bool {
	l := s.leader
	held, err := l.lease.TryAcquire(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("hub leader: lease", "error", err)
		}
		held = false
	}
	if was := l.leading.Swap(held); was != held {
		s.log.Info("hub leader", "leading", held)
		if held {
			s.poster.Wake() // what waited while no hub led
		}
	}
	return held
}

// Leading says whether this hub holds the leader's lease now.
func (s *Server) Leading() bool { return s.leader.leading.Load() }
