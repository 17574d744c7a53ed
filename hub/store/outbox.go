package store

import (
	"context"
	"fmt"
	"time"
)

// QueuedStatus is a commit status waiting in the outbox (table
// status_outbox) to be posted to its Git host: one per commit and status
// context, the latest state wanted.
type QueuedStatus struct {
	SHA     string
	Context string
	// State is the hub's word for it: running, success, failed.
	State       string
	RepoURL     string
	TargetURL   string
	Description string
	Queued      time.Time
	// Attempts counts the posts of this state that failed.
	Attempts int
	// ClaimedBy is who claimed the row last and has not finished it (""
	// when no one). As ClaimStatuses returns it, it is the claimer before
	// this claim: a leader that died, or gave up unsure, perhaps after
	// the Git host took the status.
	ClaimedBy string
}

// The outbox's statements, prepared with the ingest's: the report
// writers' transactions queue statuses too.
const (
	// outboxState reads, in one round trip, the state posted last, the
	// state waiting and who claimed it ('' for none).
	outboxState = `SELECT COALESCE((SELECT state FROM commit_statuses WHERE sha = ? AND context = ?), ''),
	COALESCE((SELECT state FROM status_outbox WHERE sha = ? AND context = ?), ''),
	COALESCE((SELECT claimed_by FROM status_outbox WHERE sha = ? AND context = ?), '')`
	// dropWaiting empties the outbox of a commit and context whose latest
	// state was posted already, unless a leader has the row in hand.
	dropWaiting = `DELETE FROM status_outbox WHERE sha = ? AND context = ? AND state <> ? AND claimed_by = ''`
	// upsertOutbox queues a state; the same state queued again changes
	// nothing (its attempts and next try stay), another one replaces it.
	// A claim stays: the leader posting the old state leaves the row for
	// the new one when it finishes.
	upsertOutbox = `INSERT INTO status_outbox(sha, context, state, repo_url, target_url, description, queued, attempts, next_try)
VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)
ON CONFLICT(sha, context) DO UPDATE SET state = excluded.state, repo_url = excluded.repo_url,
	target_url = excluded.target_url, description = excluded.description, queued = excluded.queued,
	attempts = 0, next_try = excluded.next_try
WHERE status_outbox.state <> excluded.state`
)

// QueueStatus puts q in the outbox, replacing a waiting state of the same
// commit and context (the latest state wins), unless q's state is the one
// posted last (table commit_statuses): then nothing is left waiting, but
// for a row a leader has in hand (posting another state, or unsure
// whether it did), which is set to q's state so that q's follows it.
// queued says whether the outbox has new work. Reports queue theirs with
// IngestQueued, in the transaction that stores them.
func (s *Store) QueueStatus(ctx context.Context, q QueuedStatus) (queued bool, err error) {
	return queueStatus(ctx, s.db, q, s.now())
}

func queueStatus(ctx context.Context, ex execer, q QueuedStatus, now time.Time) (bool, error) {
	if q.SHA == "" || q.Context == "" || q.State == "" {
		return false, fmt.Errorf("queue commit status %q %q: sha, context and state are required", q.SHA, q.Context)
	}
	var posted, waiting, claimedBy string
	if err := ex.QueryRowContext(ctx, outboxState, q.SHA, q.Context, q.SHA, q.Context, q.SHA, q.Context).Scan(&posted, &waiting, &claimedBy); err != nil {
		return false, fmt.Errorf("queue commit status %s %s: %w", q.SHA, q.Context, err)
	}
	switch {
	case waiting == q.State, posted == q.State && waiting == "":
		return false, nil
	case posted == q.State && claimedBy == "":
		res, err := ex.ExecContext(ctx, dropWaiting, q.SHA, q.Context, q.State)
		if err != nil {
			return false, fmt.Errorf("queue commit status %s %s: %w", q.SHA, q.Context, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return false, nil
		}
		// Claimed since it was read: replace its state as below.
	}
	res, err := ex.ExecContext(ctx, upsertOutbox, q.SHA, q.Context, q.State, q.RepoURL, q.TargetURL, q.Description, ms(now), ms(now))
	if err != nil {
		return false, fmt.Errorf("queue commit status %s %s: %w", q.SHA, q.Context, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// ClaimStatuses claims for holder up to limit statuses that are due: not
// waiting for a retry, and not claimed, or claimed longer ago than stale
// (the claimer died, or gave up unsure whether its post arrived). Each
// claim is a conditional UPDATE of the row as it was read, so of two hubs
// claiming at once only one gets a row.
func (s *Store) ClaimStatuses(ctx context.Context, holder string, stale time.Duration, limit int) ([]QueuedStatus, error) {
	now := ms(s.now())
	rows, err := s.db.QueryContext(ctx, `SELECT sha, context, state, repo_url, target_url, description, queued, attempts, claimed_by, claimed
		FROM status_outbox WHERE next_try <= ? AND (claimed_by = '' OR claimed < ?) ORDER BY next_try, queued LIMIT ?`,
		now, now-stale.Milliseconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("claim commit statuses: %w", err)
	}
	type candidate struct {
		q       QueuedStatus
		claimed int64
	}
	var cs []candidate
	for rows.Next() {
		var c candidate
		var queued int64
		if err := rows.Scan(&c.q.SHA, &c.q.Context, &c.q.State, &c.q.RepoURL, &c.q.TargetURL, &c.q.Description,
			&queued, &c.q.Attempts, &c.q.ClaimedBy, &c.claimed); err != nil {
			rows.Close()
			return nil, fmt.Errorf("claim commit statuses: %w", err)
		}
		c.q.Queued = fromMS(queued)
		cs = append(cs, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim commit statuses: %w", err)
	}
	var out []QueuedStatus
	for _, c := range cs {
		res, err := s.db.ExecContext(ctx, `UPDATE status_outbox SET claimed_by = ?, claimed = ?
			WHERE sha = ? AND context = ? AND state = ? AND claimed_by = ? AND claimed = ?`,
			holder, now, c.q.SHA, c.q.Context, c.q.State, c.q.ClaimedBy, c.claimed)
		if err != nil {
			return out, fmt.Errorf("claim commit status %s %s: %w", c.q.SHA, c.q.Context, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			out = append(out, c.q)
		}
	}
	return out, nil
}

// StatusPosted records q's state as posted (commit_statuses) and, in the
// same transaction, takes q out of the outbox when its state is still the
// one wanted; a newer state queued meanwhile stays, unclaimed, to be
// posted next.
func (s *Store) StatusPosted(ctx context.Context, holder string, q QueuedStatus) error {
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("commit status %s %s posted: %w", q.SHA, q.Context, err)
	}
	defer t.Rollback()
	if _, err := t.ExecContext(ctx, `INSERT INTO commit_statuses(sha, context, state, posted) VALUES (?, ?, ?, ?)
		ON CONFLICT(sha, context) DO UPDATE SET state = excluded.state, posted = excluded.posted`,
		q.SHA, q.Context, q.State, ms(s.now())); err != nil {
		return fmt.Errorf("commit status %s %s posted: %w", q.SHA, q.Context, err)
	}
	if err := finish(ctx, t, holder, q); err != nil {
		return fmt.Errorf("commit status %s %s posted: %w", q.SHA, q.Context, err)
	}
	if err := t.Commit(); err != nil {
		return fmt.Errorf("commit status %s %s posted: %w", q.SHA, q.Context, err)
	}
	return nil
}

// DropStatus takes q out of the outbox unposted (the Git host refused it
// for good) unless a newer state was queued meanwhile.
func (s *Store) DropStatus(ctx context.Context, holder string, q QueuedStatus) error {
	if err := finish(ctx, s.db, holder, q); err != nil {
		return fmt.Errorf("commit status %s %s dropped: %w", q.SHA, q.Context, err)
	}
	return nil
}

// finish deletes q's row if it still wants q's state, and else releases
// holder's claim on it.
func finish(ctx context.Context, ex execer, holder string, q QueuedStatus) error {
	res, err := ex.ExecContext(ctx, `DELETE FROM status_outbox WHERE sha = ? AND context = ? AND state = ?`, q.SHA, q.Context, q.State)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	_, err = ex.ExecContext(ctx, `UPDATE status_outbox SET claimed_by = '', claimed = 0 WHERE sha = ? AND context = ? AND claimed_by = ?`,
		q.SHA, q.Context, holder)
	return err
}

// RetryStatus releases holder's claim on q to be tried again at at, one
// more failed attempt counted, unless a newer state was queued meanwhile
// (that one is due at once). unsure says the post may have reached the
// Git host (no answer came): the row stays marked as claimed, so whoever
// claims it next asks the host first.
func (s *Store) RetryStatus(ctx context.Context, holder string, q QueuedStatus, at time.Time, unsure bool) error {
	by := ""
	if unsure {
		by = holder
	}
	_, err := s.db.ExecContext(ctx, `UPDATE status_outbox SET
		attempts = CASE WHEN state = ? THEN attempts + 1 ELSE attempts END,
		next_try = CASE WHEN state = ? THEN ? ELSE next_try END,
		claimed_by = ?, claimed = 0
		WHERE sha = ? AND context = ? AND claimed_by = ?`,
		q.State, q.State, ms(at), by, q.SHA, q.Context, holder)
	if err != nil {
		return fmt.Errorf("commit status %s %s retry: %w", q.SHA, q.Context, err)
	}
	return nil
}

// QueuedStatuses lists the outbox, oldest first (for tests and tools).
func (s *Store) QueuedStatuses(ctx context.Context) ([]QueuedStatus, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT sha, context, state, repo_url, target_url, description, queued, attempts, claimed_by
		FROM status_outbox ORDER BY queued, sha, context`)
	if err != nil {
		return nil, fmt.Errorf("commit status outbox: %w", err)
	}
	defer rows.Close()
	var out []QueuedStatus
	for rows.Next() {
		var q QueuedStatus
		var queued int64
		if err := rows.Scan(&q.SHA, &q.Context, &q.State, &q.RepoURL, &q.TargetURL, &q.Description, &queued, &q.Attempts, &q.ClaimedBy); err != nil {
			return nil, fmt.Errorf("commit status outbox: %w", err)
		}
		q.Queued = fromMS(queued)
		out = append(out, q)
	}
	return out, rows.Err()
}
