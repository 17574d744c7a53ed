package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"time"
)

// EventsPerGitSync bounds the Warning events kept per GitSync: the newest
// (the most recently sent) stay. A message is bounded by the channel
// (channelpb.MaxEventMessage), so a GitSync's events are too, whatever
// its agent sends.
const EventsPerGitSync = 50

// Event is one Warning event of an object a GitSync applied, folded:
// Count times between First and Last (the agent's clock).
type Event struct {
	// GitSyncNamespace and GitSyncName name the agent's GitSync the
	// event is about.
	GitSyncNamespace, GitSyncName          string
	Kind, Namespace, Name, Reason, Message string
	Count                                  int64
	First, Last                            time.Time
}

// foldKey is what makes two events one: the object, reason and message,
// hashed so the unique index stays small whatever a message's length.
// Each field goes in with its length, so no two lists of fields hash
// alike.
func (e Event) foldKey() string {
	h := sha256.New()
	for _, f := range []string{e.Kind, e.Namespace, e.Name, e.Reason, e.Message} {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(f))))
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// foldIn adds o (a later sending of the same event) into e.
func (e *Event) foldIn(o Event) {
	e.Count = addCount(e.Count, o.Count)
	if o.First.Before(e.First) {
		e.First = o.First
	}
	if o.Last.After(e.Last) {
		e.Last = o.Last
	}
}

// addCount adds two counts, stopping at the largest int64 rather than
// wrapping: an agent's counts are its own to inflate, not to overflow.
func addCount(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// upsertEvent folds an event into its row: counts add up (stopping at the
// largest int64, as addCount), first is the earlier, last the later, and
// the row moves to the newest place (seq).
const upsertEvent = `INSERT INTO gitsync_events(agent, namespace, name, fold, seq, kind, obj_namespace, obj_name, reason, message,
	count, first_seen, last_seen, updated)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(agent, namespace, name, fold) DO UPDATE SET
	seq = excluded.seq, updated = excluded.updated,
	count = CASE WHEN gitsync_events.count > 9223372036854775807 - excluded.count THEN 9223372036854775807
		ELSE gitsync_events.count + excluded.count END,
	first_seen = CASE WHEN excluded.first_seen < gitsync_events.first_seen THEN excluded.first_seen ELSE gitsync_events.first_seen END,
	last_seen = CASE WHEN excluded.last_seen > gitsync_events.last_seen THEN excluded.last_seen ELSE gitsync_events.last_seen END`

// trimEvents deletes a GitSync's events older than its EventsPerGitSync
// newest (the subquery is NULL, and deletes nothing, while it has fewer).
const trimEvents = `DELETE FROM gitsync_events WHERE agent = ? AND namespace = ? AND name = ? AND seq < (
	SELECT seq FROM gitsync_events WHERE agent = ? AND namespace = ? AND name = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)`

// AddEvents keeps a batch of an agent's Warning events (validated by the
// channel: bounded in number and size), in one transaction. Events of one
// GitSync with the same object, reason and message fold into one row
// (counts add up; first is the earliest, last the latest) that moves to
// the newest place; each GitSync keeps its EventsPerGitSync newest.
// Events of a GitSync the store has no report of (never reported, or
// deleted) are dropped: an agent cannot make the hub remember names it
// never reported. kept is how many of events were stored.
//
// Writers of one GitSync's events take turns (on PostgreSQL a lock per
// GitSync; SQLite has one writer anyway), so its order is the order the
// batches were stored in, the same from every hub.
func (s *Store) AddEvents(ctx context.Context, agent string, events []Event) (kept int, err error) {
	groups := foldBatch(agent, events)
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("events of %s: %w", agent, err)
	}
	defer t.Rollback()
	now := ms(s.now())
	// Prepared once for the batch: parsing it was a third of the cost.
	upsert, err := t.Tx.PrepareContext(ctx, t.d.bind(upsertEvent))
	if err != nil {
		return 0, fmt.Errorf("events of %s: %w", agent, err)
	}
	defer upsert.Close()
	for _, g := range groups {
		k := g.key
		id := fmt.Sprintf("events of gitsync %s/%s/%s", k.agent, k.namespace, k.name)
		if err := lockEvents(ctx, t, k); err != nil {
			return 0, fmt.Errorf("%s: %w", id, err)
		}
		var known int
		if err := t.QueryRowContext(ctx, `SELECT count(*) FROM gitsyncs WHERE agent = ? AND namespace = ? AND name = ? AND deleted = 0`,
			k.agent, k.namespace, k.name).Scan(&known); err != nil {
			return 0, fmt.Errorf("%s: %w", id, err)
		}
		if known == 0 {
			continue
		}
		var seq int64
		if err := t.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM gitsync_events WHERE agent = ? AND namespace = ? AND name = ?`,
			k.agent, k.namespace, k.name).Scan(&seq); err != nil {
			return 0, fmt.Errorf("%s: %w", id, err)
		}
		// Only the newest EventsPerGitSync of the batch could stay.
		for _, e := range g.evs[max(0, len(g.evs)-EventsPerGitSync):] {
			seq++
			if _, err := upsert.ExecContext(ctx, k.agent, k.namespace, k.name, e.fold, seq,
				e.Kind, e.Namespace, e.Name, e.Reason, e.Message, e.Count, ms(e.First), ms(e.Last), now); err != nil {
				return 0, fmt.Errorf("%s: %w", id, err)
			}
		}
		if _, err := t.ExecContext(ctx, trimEvents, k.agent, k.namespace, k.name, k.agent, k.namespace, k.name, EventsPerGitSync-1); err != nil {
			return 0, fmt.Errorf("%s: %w", id, err)
		}
		kept += g.sent
	}
	if err := t.Commit(); err != nil {
		return 0, fmt.Errorf("events of %s: %w", agent, err)
	}
	return kept, nil
}

// batchEvents are a batch's events of one GitSync.
type batchEvents struct {
	key  gitsyncKey
	sent int           // events of the batch
	evs  []foldedEvent // folded, oldest first
}

type foldedEvent struct {
	Event
	fold  string
	order int // the place of its latest sending in the batch
}

// foldBatch groups a batch by GitSync, in key order (two writers lock
// GitSyncs in one order, so they never wait on each other in a circle),
// and folds the repeats within it: one event, at the later place.
func foldBatch(agent string, events []Event) []*batchEvents {
	byKey := map[gitsyncKey]*batchEvents{}
	folds := map[gitsyncKey]map[string]*foldedEvent{}
	for i, e := range events {
		k := gitsyncKey{agent, e.GitSyncNamespace, e.GitSyncName}
		if byKey[k] == nil {
			byKey[k] = &batchEvents{key: k}
			folds[k] = map[string]*foldedEvent{}
		}
		byKey[k].sent++
		fold := e.foldKey()
		if f := folds[k][fold]; f != nil {
			f.foldIn(e)
			f.order = i
			continue
		}
		folds[k][fold] = &foldedEvent{Event: e, fold: fold, order: i}
	}
	groups := make([]*batchEvents, 0, len(byKey))
	for k, g := range byKey {
		for _, f := range folds[k] {
			g.evs = append(g.evs, *f)
		}
		slices.SortFunc(g.evs, func(a, b foldedEvent) int { return cmp.Compare(a.order, b.order) })
		groups = append(groups, g)
	}
	slices.SortFunc(groups, func(a, b *batchEvents) int {
		return cmp.Or(cmp.Compare(a.key.namespace, b.key.namespace), cmp.Compare(a.key.name, b.key.name))
	})
	return groups
}

// lockEvents makes the transaction the only writer of the GitSync's
// events until it ends.
func lockEvents(ctx context.Context, t tx, k gitsyncKey) error {
	q := t.d.lockKey()
	if q == "" {
		return nil
	}
	h := fnv.New64a()
	h.Write([]byte("gitsync_events\x00" + k.agent + "\x00" + k.namespace + "\x00" + k.name))
	_, err := t.ExecContext(ctx, q, int64(h.Sum64()))
	return err
}

// Events returns a GitSync's Warning events, newest first.
func (s *Store) Events(ctx context.Context, agent, namespace, name string) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kind, obj_namespace, obj_name, reason, message, count, first_seen, last_seen
		FROM gitsync_events WHERE agent = ? AND namespace = ? AND name = ? ORDER BY seq DESC LIMIT ?`,
		agent, namespace, name, EventsPerGitSync)
	if err != nil {
		return nil, fmt.Errorf("events of gitsync %s/%s/%s: %w", agent, namespace, name, err)
	}
	defer rows.Close()
	out := []Event{}
	for rows.Next() {
		e := Event{GitSyncNamespace: namespace, GitSyncName: name}
		var first, last int64
		if err := rows.Scan(&e.Kind, &e.Namespace, &e.Name, &e.Reason, &e.Message, &e.Count, &first, &last); err != nil {
			return nil, fmt.Errorf("events of gitsync %s/%s/%s: %w", agent, namespace, name, err)
		}
		// Not fromMS: 0 is the agent's 1970, not "never".
		e.First, e.Last = time.UnixMilli(first).UTC(), time.UnixMilli(last).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events of gitsync %s/%s/%s: %w", agent, namespace, name, err)
	}
	return out, nil
}

// DeleteEvents deletes a GitSync's events (it was deleted).
func (s *Store) DeleteEvents(ctx context.Context, agent, namespace, name string) error {
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("events of gitsync %s/%s/%s: %w", agent, namespace, name, err)
	}
	defer t.Rollback()
	if err := lockEvents(ctx, t, gitsyncKey{agent, namespace, name}); err != nil {
		return fmt.Errorf("events of gitsync %s/%s/%s: %w", agent, namespace, name, err)
	}
	if _, err := t.ExecContext(ctx, `DELETE FROM gitsync_events WHERE agent = ? AND namespace = ? AND name = ?`, agent, namespace, name); err != nil {
		return fmt.Errorf("events of gitsync %s/%s/%s: %w", agent, namespace, name, err)
	}
	if err := t.Commit(); err != nil {
		return fmt.Errorf("events of gitsync %s/%s/%s: %w", agent, namespace, name, err)
	}
	return nil
}
