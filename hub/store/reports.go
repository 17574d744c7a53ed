package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/giturl"
)

// maxBatch bounds how many reports share one transaction.
const maxBatch = 512

// ErrClosed is returned by Ingest after Close.
var ErrClosed = errors.New("hub store closed")

type ingestReq struct {
	agent  string
	report *channelpb.SyncReport
	status *QueuedStatus // queued with the report when it is stored
	done   chan ingestResult
}

type ingestResult struct {
	stored, queued bool
	err            error
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
	stored, _, err := s.IngestQueued(ctx, agent, report, nil)
	return stored, err
}

// IngestQueued is Ingest that, when the report is stored, also queues
// status (when not nil) in the commit-status outbox, in the same
// transaction: a status is queued exactly when its report is stored,
// whatever dies after. queued says whether the outbox has new work (see
// QueueStatus).
func (s *Store) IngestQueued(ctx context.Context, agent string, report *channelpb.SyncReport, status *QueuedStatus) (stored, queued bool, err error) {
	if report.GetNamespace() == "" || report.GetName() == "" {
		return false, false, fmt.Errorf("report from %s: namespace and name are required", agent)
	}
	req := &ingestReq{agent: agent, report: report, status: status, done: make(chan ingestResult, 1)}
	select {
	case s.ingest[shard(agent, report, len(s.ingest))] <- req:
	case <-s.stop:
		return false, false, ErrClosed
	case <-ctx.Done():
		return false, false, ctx.Err()
	}
	select {
	case res := <-req.done:
		return res.stored, res.queued, res.err
	case <-s.done:
		select {
		case res := <-req.done:
			return res.stored, res.queued, res.err
		default:
			return false, false, ErrClosed
		}
	case <-ctx.Done():
		return false, false, ctx.Err()
	}
}

// shard picks the writer of a GitSync's reports: always the same one, so
// its reports are written in the order they came.
func shard(agent string, r *channelpb.SyncReport, n int) int {
	if n == 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(agent + "/" + r.GetNamespace() + "/" + r.GetName()))
	return int(h.Sum32() % uint32(n))
}

// writeLoop is one writer: it takes the reports of its shard, as many at
// a time as are waiting, into one transaction.
func (s *Store) writeLoop(in chan *ingestReq) {
	defer s.writers.Done()
	for {
		select {
		case <-s.stop:
			// Write what was handed over before Close.
			for {
				batch := drain(in, nil)
				if len(batch) == 0 {
					return
				}
				s.writeBatch(batch)
			}
		case req := <-in:
			s.writeBatch(drain(in, []*ingestReq{req}))
		}
	}
}

func drain(in chan *ingestReq, batch []*ingestReq) []*ingestReq {
	for len(batch) < maxBatch {
		select {
		case req := <-in:
			batch = append(batch, req)
		default:
			return batch
		}
	}
	return batch
}

const upsertGitSync = `INSERT INTO gitsyncs(agent, namespace, name, state_version, source_url, ref, ref_kind, ref_name,
	path, revision, attempted_revision, phase, message, drift_count, warning_events, last_sync, deleted, updated, children_hash,
	repo_key)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(agent, namespace, name) DO UPDATE SET
	state_version = excluded.state_version, source_url = excluded.source_url, repo_key = excluded.repo_key, ref = excluded.ref,
	ref_kind = excluded.ref_kind, ref_name = excluded.ref_name,
	path = excluded.path, revision = excluded.revision, attempted_revision = excluded.attempted_revision,
	phase = excluded.phase, message = excluded.message, drift_count = excluded.drift_count,
	warning_events = excluded.warning_events,
	last_sync = excluded.last_sync, deleted = excluded.deleted, updated = excluded.updated,
	children_hash = excluded.children_hash
WHERE excluded.state_version > gitsyncs.state_version`

const upsertRevision = `INSERT INTO revisions(sha, agent, namespace, name, repo_url, revision, state, first_seen, last_seen)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(sha, agent, namespace, name) DO UPDATE SET
	repo_url = excluded.repo_url, revision = excluded.revision, state = excluded.state, last_seen = excluded.last_seen`

// supersedeRevisions ends the live or applying state of every other commit
// of the GitSync.
const supersedeRevisions = `UPDATE revisions SET state = 'superseded', last_seen = ?
WHERE agent = ? AND namespace = ? AND name = ? AND state IN ('live', 'applying') AND sha NOT IN (?, ?)`

const agentSeen = `UPDATE agents SET last_seen = ? WHERE name = ?`

// The child rows of a GitSync: replaced whole with each stored report.
const (
	deleteConditions = `DELETE FROM gitsync_conditions WHERE agent = ? AND namespace = ? AND name = ?`
	deleteNamespaces = `DELETE FROM gitsync_namespaces WHERE agent = ? AND namespace = ? AND name = ?`
	deleteDrift      = `DELETE FROM gitsync_drift WHERE agent = ? AND namespace = ? AND name = ?`
	insertCondition  = `INSERT INTO gitsync_conditions(agent, namespace, name, position, type, status, reason, message, last_transition)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertNamespace = `INSERT INTO gitsync_namespaces(agent, namespace, name, position, object_namespace, objects)
VALUES (?, ?, ?, ?, ?, ?)`
	insertDrift = `INSERT INTO gitsync_drift(agent, namespace, name, position, obj_group, obj_kind, obj_namespace, obj_name,
	paths, managers, detected, deleted)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// childrenHash reads the fingerprint of the child rows a GitSync has; on
// PostgreSQL it locks the row, so two hubs writing one GitSync at once
// take turns.
const childrenHash = `SELECT children_hash FROM gitsyncs WHERE agent = ? AND namespace = ? AND name = ?`

// ingestQueries are prepared once: parsing SQL was half the cost of a
// small batch.
func ingestQueries(d *dialect) []string {
	return []string{upsertGitSync, upsertRevision, supersedeRevisions, agentSeen, d.lockRow(childrenHash),
		deleteConditions, deleteNamespaces, deleteDrift, insertCondition, insertNamespace, insertDrift,
		outboxState, dropWaiting, upsertOutbox}
}

// execer runs statements: a transaction, or prepared statements in one.
type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// prepared holds statements prepared on the database (database/sql keeps
// one per connection), by their query text.
type prepared map[string]*sql.Stmt

func prepare(ctx context.Context, d db, queries []string) (prepared, error) {
	p := prepared{}
	for _, q := range queries {
		st, err := d.PrepareContext(ctx, q)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("prepare %q: %w", q, err)
		}
		p[q] = st
	}
	return p, nil
}

func (p prepared) close() {
	for _, st := range p {
		st.Close()
	}
}

// txStmts runs prepared statements in one transaction; a query that was
// not prepared runs as it is.
type txStmts struct {
	t     tx
	p     prepared
	bound map[string]*sql.Stmt
}

func (x *txStmts) stmt(ctx context.Context, q string) *sql.Stmt {
	st, ok := x.bound[q]
	if !ok {
		ps, ok := x.p[q]
		if !ok {
			return nil
		}
		st = x.t.StmtContext(ctx, ps)
		x.bound[q] = st
	}
	return st
}

func (x *txStmts) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := x.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return x.t.ExecContext(ctx, q, args...)
}

func (x *txStmts) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if st := x.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return x.t.QueryRowContext(ctx, q, args...)
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
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store reports: %w", err)
	}
	defer t.Rollback()
	st := &txStmts{t: t, p: s.stmts, bound: map[string]*sql.Stmt{}}
	now := s.now()
	agents := map[string]bool{}
	for i, req := range batch {
		stored, err := writeReport(ctx, st, req.agent, req.report, now)
		if err != nil {
			return fmt.Errorf("report %s/%s/%s: %w", req.agent, req.report.GetNamespace(), req.report.GetName(), err)
		}
		results[i].stored = stored
		if stored && req.status != nil {
			if results[i].queued, err = queueStatus(ctx, st, *req.status, now); err != nil {
				return fmt.Errorf("report %s/%s/%s: %w", req.agent, req.report.GetNamespace(), req.report.GetName(), err)
			}
		}
		agents[req.agent] = true
	}
	// In name order: writers on PostgreSQL lock agents' rows in one order,
	// so two batches never wait on each other in a circle.
	for _, a := range slices.Sorted(maps.Keys(agents)) {
		if _, err := st.ExecContext(ctx, agentSeen, ms(now), a); err != nil {
			return fmt.Errorf("agent %s last seen: %w", a, err)
		}
	}
	if err := t.Commit(); err != nil {
		return fmt.Errorf("store reports: %w", err)
	}
	return nil
}

func writeReport(ctx context.Context, ex execer, agent string, r *channelpb.SyncReport, now time.Time) (bool, error) {
	version := r.GetStateVersion()
	if version > math.MaxInt64 {
		version = math.MaxInt64
	}
	kind, refName := splitRef(r.GetRef())
	// Most reports repeat the conditions, counts and drift of the last:
	// their child rows are rewritten only when they changed.
	var oldHash string
	if err := ex.QueryRowContext(ctx, lockRow(ex, childrenHash), agent, r.GetNamespace(), r.GetName()).Scan(&oldHash); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	hash := hashChildren(r)
	res, err := ex.ExecContext(ctx, upsertGitSync, agent, r.GetNamespace(), r.GetName(), int64(version),
		r.GetSourceUrl(), r.GetRef(), kind, refName, r.GetPath(), r.GetRevision(), r.GetAttemptedRevision(),
		r.GetPhase(), r.GetMessage(), r.GetDrift().GetCount(), r.GetWarningEvents(), r.GetLastSyncUnixMs(),
		b2i(r.GetDeleted()), ms(now), hash, giturl.Key(r.GetSourceUrl()))
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if hash != oldHash {
		if err := writeChildren(ctx, ex, agent, r); err != nil {
			return false, err
		}
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
		if _, err := ex.ExecContext(ctx, upsertRevision, sha, agent, r.GetNamespace(), r.GetName(),
			r.GetSourceUrl(), rev, state, seen, seen); err != nil {
			return false, err
		}
		if i < len(keep) {
			keep[i] = sha
			i++
		}
	}
	if _, err := ex.ExecContext(ctx, supersedeRevisions, seen, agent, r.GetNamespace(), r.GetName(), keep[0], keep[1]); err != nil {
		return false, err
	}
	return true, nil
}

// hashChildren fingerprints what a report puts in child rows.
func hashChildren(r *channelpb.SyncReport) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&channelpb.SyncReport{
		Conditions: r.GetConditions(), Namespaces: r.GetNamespaces(),
		Drift: &channelpb.DriftSummary{Objects: r.GetDrift().GetObjects()},
	})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// lockRow is q with the row lock of ex's dialect.
func lockRow(ex execer, q string) string {
	if x, ok := ex.(*txStmts); ok {
		return x.t.d.lockRow(q)
	}
	return q
}

// writeChildren replaces the GitSync's conditions, namespace counts and
// drifted objects with the report's.
func writeChildren(ctx context.Context, ex execer, agent string, r *channelpb.SyncReport) error {
	ns, name := r.GetNamespace(), r.GetName()
	for _, q := range []string{deleteConditions, deleteNamespaces, deleteDrift} {
		if _, err := ex.ExecContext(ctx, q, agent, ns, name); err != nil {
			return err
		}
	}
	for i, c := range r.GetConditions() {
		if _, err := ex.ExecContext(ctx, insertCondition, agent, ns, name, i,
			c.GetType(), c.GetStatus(), c.GetReason(), c.GetMessage(), c.GetLastTransitionUnixMs()); err != nil {
			return fmt.Errorf("condition %s: %w", c.GetType(), err)
		}
	}
	for i, n := range r.GetNamespaces() {
		if _, err := ex.ExecContext(ctx, insertNamespace, agent, ns, name, i, n.GetNamespace(), n.GetObjects()); err != nil {
			return fmt.Errorf("namespace %s: %w", n.GetNamespace(), err)
		}
	}
	for i, d := range r.GetDrift().GetObjects() {
		if _, err := ex.ExecContext(ctx, insertDrift, agent, ns, name, i, d.GetGroup(), d.GetKind(), d.GetNamespace(), d.GetName(),
			strings.Join(d.GetPaths(), "\n"), strings.Join(d.GetManagers(), "\n"), d.GetDetectedUnixMs(), b2i(d.GetDeleted())); err != nil {
			return fmt.Errorf("drifted %s %s/%s: %w", d.GetKind(), d.GetNamespace(), d.GetName(), err)
		}
	}
	return nil
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
