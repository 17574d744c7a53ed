package agent

import (
	"slices"
	"sync"
	"time"

	"tether.dev/tether/channel/channelpb"
)

// key names one GitSync.
type key struct{ namespace, name string }

// entry is the newest unacknowledged report of one GitSync. sentOn is the
// session that last sent it; a new session, or a newer report, makes it due
// again.
type entry struct {
	report *channelpb.SyncReport
	sentOn uint64
}

// buffer keeps the newest report per GitSync until the hub acknowledges it.
// Reports are never mutated once stored, so a sender may marshal one while
// Report replaces it.
type buffer struct {
	mu      sync.Mutex
	now     func() time.Time
	pending map[key]*entry
	last    map[key]uint64 // newest state_version handed out, kept after the ack
	notify  chan struct{}
}

func newBuffer(now func() time.Time) *buffer {
	return &buffer{
		now:     now,
		pending: map[key]*entry{},
		last:    map[key]uint64{},
		notify:  make(chan struct{}, 1),
	}
}

// put stamps r with a state_version greater than any before for its
// GitSync and makes it the one to send. It never blocks.
func (b *buffer) put(r *channelpb.SyncReport) {
	k := key{r.GetNamespace(), r.GetName()}
	b.mu.Lock()
	v := uint64(b.now().UnixNano())
	if v <= b.last[k] {
		v = b.last[k] + 1
	}
	b.last[k] = v
	r.StateVersion = v
	b.pending[k] = &entry{report: r}
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// due returns the reports not yet sent on session, oldest state first, and
// marks them sent on it.
func (b *buffer) due(session uint64) []*channelpb.SyncReport {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*channelpb.SyncReport
	for _, e := range b.pending {
		if e.sentOn != session {
			e.sentOn = session
			out = append(out, e.report)
		}
	}
	slices.SortFunc(out, func(a, b *channelpb.SyncReport) int {
		switch {
		case a.StateVersion < b.StateVersion:
			return -1
		case a.StateVersion > b.StateVersion:
			return 1
		}
		return 0
	})
	return out
}

// ack drops the report of namespace/name if the hub has its state or a
// newer one.
func (b *buffer) ack(namespace, name string, version uint64) {
	k := key{namespace, name}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.pending[k]; ok && e.report.StateVersion <= version {
		delete(b.pending, k)
	}
}

// len is the number of reports waiting for an ack.
func (b *buffer) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}
