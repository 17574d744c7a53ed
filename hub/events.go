package hub

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/store"
)

// Bounds of the events the hub keeps, in memory: the newest
// eventsPerGitSync per GitSync, for at most maxEventGitSyncs GitSyncs the
// store knows (the least recently warned about goes first). A message is
// at most channelpb.MaxEventMessage bytes, so the whole is bounded
// whatever agents send. A hub restart forgets them: they are a view of
// now, and the agent sends what is still happening.
const (
	eventsPerGitSync = 50
	maxEventGitSyncs = 2000
)

// EventJSON is one Warning event, folded: Count times between First and
// Last.
type EventJSON struct {
	Kind      string    `json:"kind"`
	Namespace string    `json:"namespace,omitempty"`
	Name      string    `json:"name"`
	Reason    string    `json:"reason"`
	Message   string    `json:"message"`
	Count     int64     `json:"count"`
	First     time.Time `json:"first"`
	Last      time.Time `json:"last"`
}

type eventKey struct{ agent, namespace, name string }

// eventLog is the hub's memory of recent Warning events per GitSync.
type eventLog struct {
	mu      sync.Mutex
	per     map[eventKey][]EventJSON // oldest first
	touched map[eventKey]time.Time
}

func newEventLog() *eventLog {
	return &eventLog{per: map[eventKey][]EventJSON{}, touched: map[eventKey]time.Time{}}
}

// add folds e into the GitSync's events: the same object, reason and
// message counts up and moves to the newest place instead of repeating.
func (l *eventLog) add(k eventKey, e EventJSON, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs := l.per[k]
	if _, ok := l.per[k]; !ok && len(l.per) >= maxEventGitSyncs {
		l.evictOldest()
	}
	if i := slices.IndexFunc(evs, func(o EventJSON) bool {
		return o.Kind == e.Kind && o.Namespace == e.Namespace && o.Name == e.Name && o.Reason == e.Reason && o.Message == e.Message
	}); i >= 0 {
		old := evs[i]
		e.Count += old.Count
		if old.First.Before(e.First) {
			e.First = old.First
		}
		if old.Last.After(e.Last) {
			e.Last = old.Last
		}
		evs = slices.Delete(evs, i, i+1)
	}
	evs = append(evs, e)
	if len(evs) > eventsPerGitSync {
		// Copy, so the dropped events' strings are not kept alive by
		// the slice's backing array.
		evs = slices.Clone(evs[len(evs)-eventsPerGitSync:])
	}
	l.per[k] = evs
	l.touched[k] = now
}

func (l *eventLog) evictOldest() {
	var oldest eventKey
	var at time.Time
	first := true
	for k, t := range l.touched {
		if first || t.Before(at) {
			oldest, at, first = k, t, false
		}
	}
	delete(l.per, oldest)
	delete(l.touched, oldest)
}

// recent returns a GitSync's events, newest first.
func (l *eventLog) recent(k eventKey) []EventJSON {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Clone(l.per[k])
	slices.Reverse(out)
	return out
}

// forget drops a GitSync's events (it was deleted).
func (l *eventLog) forget(k eventKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.per, k)
	delete(l.touched, k)
}

// Events keeps a batch of an agent's Warning events for the GitSyncs the
// hub knows (the channel server calls it; it validated the batch). Events
// of a GitSync the hub has no report of are dropped: an agent cannot make
// the hub remember names it never reported.
func (s *Server) Events(ctx context.Context, agent string, batch *channelpb.WarningEvents) error {
	now := time.Now()
	known := map[eventKey]bool{}
	for _, e := range batch.GetEvents() {
		k := eventKey{agent, e.GetGitsyncNamespace(), e.GetGitsyncName()}
		ok, seen := known[k]
		if !seen {
			_, err := s.store.GitSync(ctx, agent, k.namespace, k.name)
			switch {
			case err == nil:
				ok = true
			case !isNotFound(err):
				return err
			}
			known[k] = ok
		}
		if !ok {
			s.metrics.events.WithLabelValues("unknown").Inc()
			continue
		}
		s.events.add(k, EventJSON{
			Kind: e.GetKind(), Namespace: e.GetNamespace(), Name: e.GetName(), Reason: e.GetReason(),
			Message: v1alpha1.RedactString(e.GetMessage()), Count: e.GetCount(),
			First: time.UnixMilli(e.GetFirstUnixMs()).UTC(), Last: time.UnixMilli(e.GetLastUnixMs()).UTC(),
		}, now)
		s.metrics.events.WithLabelValues("kept").Inc()
	}
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
