package store

import (
	"context"
	"fmt"
	"time"

	"tether.dev/tether/channel/channelpb"
)

// SyncNowKeep is how long a "sync now" waits in table sync_now for the
// replica that holds its agent: an agent polls its repositories at least
// this often in any sensible setup, so an older request has been
// overtaken by the poll. Older rows are never delivered; the sweep
// (DeliverableSyncNows with no agent) and Prune delete them.
const SyncNowKeep = 10 * time.Minute

// PendingSyncNow is a "sync now" on its way from the replica that got it
// (a push webhook, the resync API) to the one that holds the agent's
// stream.
type PendingSyncNow struct {
	ID    int64
	Agent string
	// Replica is the holder it was addressed to ("" once given back by
	// one that could not deliver it): the NOTIFY's addressee. Whichever
	// replica holds the agent delivers it.
	Replica string
	Msg     *channelpb.SyncNow
	Created time.Time
}

// AddSyncNow records request p for p.Agent, addressed to p.Replica (""
// for whichever replica the agent connects to next), created at
// p.Created (now when zero: a request given back by a replica that
// could not deliver it keeps its age), and returns its id. The row is
// committed when AddSyncNow returns: the NOTIFY that follows may be
// lost, the request is not.
func (s *Store) AddSyncNow(ctx context.Context, p PendingSyncNow) (int64, error) {
	if p.Created.IsZero() {
		p.Created = s.now()
	}
	var id int64
	m := p.Msg
	err := s.db.QueryRowContext(ctx, `INSERT INTO sync_now(agent, replica, namespace, name, repo_url, branch_or_tag, reason, created)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		p.Agent, p.Replica, m.GetNamespace(), m.GetName(), m.GetRepoUrl(), m.GetBranchOrTag(), m.GetReason(), ms(p.Created)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("agent %s: recording sync now: %w", p.Agent, err)
	}
	return id, nil
}

// ClaimSyncNow deletes request id and says whether this call did: of
// replicas claiming the same request at once, one gets it and delivers
// it.
func (s *Store) ClaimSyncNow(ctx context.Context, id int64) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sync_now WHERE id = ?`, id)
	if err != nil {
		return false, fmt.Errorf("claiming sync now %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("claiming sync now %d: %w", id, err)
	}
	return n == 1, nil
}

// DeliverableSyncNows lists the requests younger than SyncNowKeep for
// agent, whoever they were addressed to, oldest first. With agent "" it
// lists every agent's (a replica's sweep, which picks those of the
// agents it holds), and first deletes the older ones.
func (s *Store) DeliverableSyncNows(ctx context.Context, agent string) ([]PendingSyncNow, error) {
	cut := ms(s.now().Add(-SyncNowKeep))
	q := `SELECT id, agent, replica, namespace, name, repo_url, branch_or_tag, reason, created
		FROM sync_now WHERE created >= ? AND agent = ? ORDER BY id`
	args := []any{cut, agent}
	if agent == "" {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM sync_now WHERE created < ?`, cut); err != nil {
			return nil, fmt.Errorf("dropping old sync now requests: %w", err)
		}
		q = `SELECT id, agent, replica, namespace, name, repo_url, branch_or_tag, reason, created
		FROM sync_now WHERE created >= ? ORDER BY id`
		args = args[:1]
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("pending sync now requests: %w", err)
	}
	defer rows.Close()
	var out []PendingSyncNow
	for rows.Next() {
		p := PendingSyncNow{Msg: &channelpb.SyncNow{}}
		var created int64
		if err := rows.Scan(&p.ID, &p.Agent, &p.Replica, &p.Msg.Namespace, &p.Msg.Name, &p.Msg.RepoUrl,
			&p.Msg.BranchOrTag, &p.Msg.Reason, &created); err != nil {
			return nil, fmt.Errorf("pending sync now requests: %w", err)
		}
		p.Created = fromMS(created)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pending sync now requests: %w", err)
	}
	return out, nil
}
