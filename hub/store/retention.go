package store

import (
	"context"
	"fmt"
	"time"
)

// Pruned counts what Prune deleted.
type Pruned struct {
	Revisions      int64
	CommitStatuses int64
	GitSyncs       int64 // deleted GitSyncs' last states
	Events         int64 // Warning events
	Sessions       int64 // the page's sessions, expired or of a revoked token
	// QueuedStatuses are commit statuses queued before and never posted
	// (the Git host was away all along, or is no longer configured).
	QueuedStatuses int64
	// SyncNows are "sync now" requests older than SyncNowKeep that no
	// replica delivered (the agent's poll has done their work since).
	SyncNows int64
}

// Prune deletes history older than before: revisions no GitSync is on or
// applying any more (failed or superseded, last seen before), commit
// statuses posted before for commits nothing is on or applying, and the
// last state of GitSyncs deleted before, Warning events last sent before,
// and commit statuses queued before and still not posted. What is live
// stays, however old: a badge of the running commit never goes blank.
//
// It also deletes, whatever before is, what no one can read any more:
// events of a GitSync that is gone (DeleteEvents missed, say when the hub
// stopped between the two), sessions that expired, sessions of a revoked
// token, and "sync now" requests older than SyncNowKeep.
func (s *Store) Prune(ctx context.Context, before time.Time) (Pruned, error) {
	cut := ms(before)
	var p Pruned
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return p, fmt.Errorf("prune before %s: %w", before.Format(time.RFC3339), err)
	}
	defer t.Rollback()
	for _, step := range []struct {
		n     *int64
		query string
	}{
		{&p.Revisions, `DELETE FROM revisions WHERE last_seen < ? AND state NOT IN ('live', 'applying')`},
		{&p.CommitStatuses, `DELETE FROM commit_statuses WHERE posted < ?
			AND sha NOT IN (SELECT sha FROM revisions WHERE state IN ('live', 'applying'))`},
		{nil, `DELETE FROM gitsync_conditions WHERE EXISTS (SELECT 1 FROM gitsyncs g WHERE g.agent = gitsync_conditions.agent
			AND g.namespace = gitsync_conditions.namespace AND g.name = gitsync_conditions.name AND g.deleted = 1 AND g.updated < ?)`},
		{nil, `DELETE FROM gitsync_namespaces WHERE EXISTS (SELECT 1 FROM gitsyncs g WHERE g.agent = gitsync_namespaces.agent
			AND g.namespace = gitsync_namespaces.namespace AND g.name = gitsync_namespaces.name AND g.deleted = 1 AND g.updated < ?)`},
		{nil, `DELETE FROM gitsync_drift WHERE EXISTS (SELECT 1 FROM gitsyncs g WHERE g.agent = gitsync_drift.agent
			AND g.namespace = gitsync_drift.namespace AND g.name = gitsync_drift.name AND g.deleted = 1 AND g.updated < ?)`},
		{&p.GitSyncs, `DELETE FROM gitsyncs WHERE deleted = 1 AND updated < ?`},
		{&p.Events, `DELETE FROM gitsync_events WHERE updated < ? OR NOT EXISTS (SELECT 1 FROM gitsyncs g
			WHERE g.agent = gitsync_events.agent AND g.namespace = gitsync_events.namespace AND g.name = gitsync_events.name AND g.deleted = 0)`},
		{&p.QueuedStatuses, `DELETE FROM status_outbox WHERE queued < ?`},
	} {
		res, err := t.ExecContext(ctx, step.query, cut)
		if err != nil {
			return Pruned{}, fmt.Errorf("prune before %s: %w", before.Format(time.RFC3339), err)
		}
		if step.n != nil {
			*step.n, _ = res.RowsAffected()
		}
	}
	res, err := t.ExecContext(ctx, `DELETE FROM sessions WHERE expires <= ?
		OR token_id IN (SELECT id FROM tokens WHERE revoked IS NOT NULL)`, ms(s.now()))
	if err != nil {
		return Pruned{}, fmt.Errorf("prune sessions: %w", err)
	}
	p.Sessions, _ = res.RowsAffected()
	res, err = t.ExecContext(ctx, `DELETE FROM sync_now WHERE created < ?`, ms(s.now().Add(-SyncNowKeep)))
	if err != nil {
		return Pruned{}, fmt.Errorf("prune sync now requests: %w", err)
	}
	p.SyncNows, _ = res.RowsAffected()
	if err := t.Commit(); err != nil {
		return Pruned{}, fmt.Errorf("prune before %s: %w", before.Format(time.RFC3339), err)
	}
	return p, nil
}
