package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	"tether.dev/tether/channel/channelpb"
)

// maxBatch bounds how many reports share one transaction.
const maxBatch = 512

// ErrClosed is returned by Ingest after Close.
var ErrClosed = errors.New("hub store closed")

type ingestReq struct {
	agent  string
	report *channelpb.SyncReport
	done   chan ingestResult
}

type ingestResult struct {
	stored bool
	err    error
}

// Ingest stores report as the state of the agent's GitSync when its
// state_version is greater than the one stored; stored says whether it did.
// A report that is not newer is not an error: the agent may drop it, the hub
// already has that state or a later one. This is how a report resent after
// a reconnect never counts twice.
//
// Reports from all callers are written by one goroutine, many to a
// transaction, so a burst of reports costs one commit, not one each.
func (s *Store) Ingest(ctx context.Context, agent string, report *channelpb.SyncReport) (bool, error) {
	if report.GetNamespace() == "" || report.GetName() == "" {
		return false, fmt.Errorf("report from %s: namespace and name are required", agent)
	}
	req := &ingestReq{agent: agent, report: report, done: make(chan ingestResult, 1)}
	select {
	case s.ingest <- req:
	case <-s.stop:
		return false, ErrClosed
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case res := <-req.done:
		return res.stored, res.err
	case <-s.done:
		select {
		case res := <-req.done:
			return res.stored, res.err
		default:
			return false, ErrClosed
		}
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (s *Store) writeLoop() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			// Write what was handed over before Close.
			for {
				batch := s.drain(nil)
				if len(batch) == 0 {
					return
				}
				s.writeBatch(batch)
			}
		case req := <-s.ingest:
			s.writeBatch(s.drain([]*ingestReq{req}))
		}
	}
}

func (s *Store) drain(batch []*ingestReq) []*ingestReq {
	for len(batch) < maxBatch {
		select {
		case req := <-s.ingest:
			batch = append(batch, req)
		default:
			return batch
		}
	}
	return batch
}

const upsertGitSync = `INSERT INTO gitsyncs(agent, namespace, name, state_version, source_url, ref, path,
	revision, attempted_revision, phase, message, drift_count, last_sync, deleted, updated, report)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(agent, namespace, name) DO UPDATE SET
	state_version = excluded.state_version, source_url = excluded.source_url, ref = excluded.ref,
	path = excluded.path, revision = excluded.revision, attempted_revision = excluded.attempted_revision,
	phase = excluded.phase, message = excluded.message, drift_count = excluded.drift_count,
	last_sync = excluded.last_sync, deleted = excluded.deleted, updated = excluded.updated,
	report = excluded.report
WHERE excluded.state_version > gitsyncs.state_version`

const upsertRevision = `INSERT INTO revisions(sha, agent, namespace, name, repo_url, revision, state, first_seen, last_seen)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(sha, agent, namespace, name) DO UPDATE SET
	repo_url = excluded.repo_url, revision = excluded.revision, state = excluded.state, last_seen = excluded.last_seen`

// supersedeRevisions ends the live or applying state of every other commit
// of the GitSync.
const supersedeRevisions = `UPDATE revisions SET state = 'superseded', last_seen = ?
WHERE agent = ? AND namespace = ? AND name = ? AND state IN ('live', 'applying') AND sha NOT IN (?, ?)`

type batchStmts struct {
	gitsync, revision, supersede, seen *sql.Stmt
}

func prepareBatch(ctx context.Context, db *sql.DB) (batchStmts, error) {
	var st batchStmts
	var err error
	for _, p := range []struct {
		dst  **sql.Stmt
		text string
	}{
		{&st.gitsync, upsertGitSync},
		{&st.revision, upsertRevision},
		{&st.supersede, supersedeRevisions},
		{&st.seen, `UPDATE agents SET last_seen = ? WHERE name = ?`},
	} {
		if *p.dst, err = db.PrepareContext(ctx, p.text); err != nil {
			return st, err
		}
	}
	return st, nil
}

func (s *Store) writeBatch(batch []*ingestReq) {
	results := make([]ingestResult, len(batch))
	err := s.writeTx(batch, results)
	for i, req := range batch {
		if err != nil {
			results[i] = ingestResult{err: err}
		}
		req.done <- results[i]
	}
}

func (s *Store) writeTx(batch []*ingestReq, results []ingestResult) error {
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store reports: %w", err)
	}
	defer tx.Rollback()
	// The statements are prepared once per connection (database/sql keeps
	// them); parsing SQL was half the cost of a small batch.
	st := batchStmts{
		gitsync:   tx.StmtContext(ctx, s.stmts.gitsync),
		revision:  tx.StmtContext(ctx, s.stmts.revision),
		supersede: tx.StmtContext(ctx, s.stmts.supersede),
		seen:      tx.StmtContext(ctx, s.stmts.seen),
	}
	now := s.now()
	agents := map[string]bool{}
	for i, req := range batch {
		stored, err := writeReport(ctx, &st, req.agent, req.report, now)
		if err != nil {
			return fmt.Errorf("report %s/%s/%s: %w", req.agent, req.report.GetNamespace(), req.report.GetName(), err)
		}
		results[i].stored = stored
		agents[req.agent] = true
	}
	for a := range agents {
		if _, err := st.seen.ExecContext(ctx, ms(now), a); err != nil {
			return fmt.Errorf("agent %s last seen: %w", a, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store reports: %w", err)
	}
	return nil
}

func writeReport(ctx context.Context, st *batchStmts, agent string, r *channelpb.SyncReport, now time.Time) (bool, error) {
	blob, err := proto.Marshal(r)
	if err != nil {
		return false, err
	}
	version := r.GetStateVersion()
	if version > math.MaxInt64 {
		version = math.MaxInt64
	}
	res, err := st.gitsync.ExecContext(ctx, agent, r.GetNamespace(), r.GetName(), int64(version),
		r.GetSourceUrl(), r.GetRef(), r.GetPath(), r.GetRevision(), r.GetAttemptedRevision(),
		r.GetPhase(), r.GetMessage(), r.GetDrift().GetCount(), r.GetLastSyncUnixMs(), r.GetDeleted(),
		ms(now), blob)
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	seen := observed(r, now)
	states := RevisionStates(r)
	keep := [2]string{}
	i := 0
	for sha, state := range states {
		rev := r.GetRevision()
		if sha != SHA(rev) {
			rev = r.GetAttemptedRevision()
		}
		if _, err := st.revision.ExecContext(ctx, sha, agent, r.GetNamespace(), r.GetName(),
			r.GetSourceUrl(), rev, state, seen, seen); err != nil {
			return false, err
		}
		if i < len(keep) {
			keep[i] = sha
			i++
		}
	}
	if _, err := st.supersede.ExecContext(ctx, seen, agent, r.GetNamespace(), r.GetName(), keep[0], keep[1]); err != nil {
		return false, err
	}
	return true, nil
}

// observed is when the agent saw the state: its state_version is its clock
// in unix nanoseconds. A buffered report that arrives late keeps its time.
func observed(r *channelpb.SyncReport, now time.Time) int64 {
	v := r.GetStateVersion()
	if v == 0 || v > math.MaxInt64 {
		return ms(now)
	}
	t := time.Unix(0, int64(v))
	if t.After(now) || t.Year() < 2000 {
		return ms(now) // not a clock reading; fall back on the hub's
	}
	return ms(t)
}
