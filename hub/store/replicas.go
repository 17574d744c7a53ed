package store

import (
	"context"
	"fmt"
	"time"
)

// Replica is one hub process sharing the database with others: the URL
// its peers reach it at ("" when they cannot), and when it last said it
// was alive.
type Replica struct {
	ID        string
	URL       string
	Heartbeat time.Time
}

// ReplicaHeartbeat says replica id is alive and reachable at url. It
// returns joined true when the database did not know it (its first
// heartbeat, or the others gave it up as dead because its heartbeats did
// not arrive for ttl): its agents were then marked disconnected, and the
// replica should claim the streams it holds again (AgentConnectedAt).
//
// It also gives up the replicas whose heartbeat is older than ttl, and
// marks their agents disconnected: a replica that died without a word
// still holds them in the database.
func (s *Store) ReplicaHeartbeat(ctx context.Context, id, url string, ttl time.Duration) (joined bool, err error) {
	now := ms(s.now())
	res, err := s.db.ExecContext(ctx, `UPDATE replicas SET heartbeat = ?, url = ? WHERE id = ?`, now, url, id)
	if err != nil {
		return false, fmt.Errorf("replica %s heartbeat: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, fmt.Errorf("replica %s heartbeat: %w", id, err)
	} else if n == 0 {
		joined = true
		if _, err := s.db.ExecContext(ctx, `INSERT INTO replicas(id, url, heartbeat) VALUES (?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET url = excluded.url, heartbeat = excluded.heartbeat`, id, url, now); err != nil {
			return false, fmt.Errorf("replica %s join: %w", id, err)
		}
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM replicas WHERE heartbeat <= ?`, now-ttl.Milliseconds()); err != nil {
		return joined, fmt.Errorf("replica %s: giving up dead replicas: %w", id, err)
	}
	// An agent connected without a replica (written before replicas, or
	// by a hub on SQLite) is held by no one alive either.
	if _, err := s.db.ExecContext(ctx, `UPDATE agents SET connected = 0, replica = ''
		WHERE connected = 1 AND replica NOT IN (SELECT id FROM replicas)`); err != nil {
		return joined, fmt.Errorf("replica %s: disconnecting dead replicas' agents: %w", id, err)
	}
	return joined, nil
}

// ReplicaLeft forgets replica id and marks the agents it held
// disconnected: it stops cleanly.
func (s *Store) ReplicaLeft(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE agents SET connected = 0, replica = '', last_seen = ? WHERE replica = ?`, ms(s.now()), id); err != nil {
		return fmt.Errorf("replica %s leaving: %w", id, err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM replicas WHERE id = ?`, id); err != nil {
		return fmt.Errorf("replica %s leaving: %w", id, err)
	}
	return nil
}

// AgentConnectedAt records, in one statement, that agent opened its
// channel on replica: it is connected, and that replica holds its
// stream (replacing whichever held it before).
func (s *Store) AgentConnectedAt(ctx context.Context, name, version, clusterUID, replica string) error {
	now := ms(s.now())
	_, err := s.db.ExecContext(ctx, `INSERT INTO agents(name, connected, last_seen, version, cluster_uid, created, replica)
		VALUES (?, 1, ?, ?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET connected = 1, last_seen = excluded.last_seen,
			version = excluded.version, cluster_uid = excluded.cluster_uid, replica = excluded.replica`,
		name, now, version, clusterUID, now, replica)
	if err != nil {
		return fmt.Errorf("agent %s connected at %s: %w", name, replica, err)
	}
	return nil
}

// AgentClaimed records again that replica holds agent's stream, after
// the others gave the replica up while its database connection was down.
func (s *Store) AgentClaimed(ctx context.Context, name, replica string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE agents SET connected = 1, replica = ? WHERE name = ?`, replica, name); err != nil {
		return fmt.Errorf("agent %s claimed by %s: %w", name, replica, err)
	}
	return nil
}

// AgentDisconnectedFrom records that agent's last stream on replica
// closed, unless another replica holds the agent by now: a stream that
// died late on one replica does not undo the agent's reconnection to
// another.
func (s *Store) AgentDisconnectedFrom(ctx context.Context, name, replica string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE agents SET connected = 0, replica = '', last_seen = ? WHERE name = ? AND replica = ?`,
		ms(s.now()), name, replica)
	if err != nil {
		return fmt.Errorf("agent %s disconnected from %s: %w", name, replica, err)
	}
	return nil
}

// AgentReplica returns the replica that holds agent's stream, when the
// agent is connected and that replica's heartbeat is younger than ttl;
// ErrNotFound otherwise.
func (s *Store) AgentReplica(ctx context.Context, agent string, ttl time.Duration) (Replica, error) {
	var r Replica
	var hb int64
	err := s.db.QueryRowContext(ctx, `SELECT r.id, r.url, r.heartbeat FROM agents a JOIN replicas r ON r.id = a.replica
		WHERE a.name = ? AND a.connected = 1 AND r.heartbeat > ?`, agent, ms(s.now())-ttl.Milliseconds()).Scan(&r.ID, &r.URL, &hb)
	if err != nil {
		return Replica{}, notFound(err, "replica of agent "+agent)
	}
	r.Heartbeat = fromMS(hb)
	return r, nil
}

// Notify sends payload to every session LISTENing on channel
// (PostgreSQL only; NOTIFY is delivered when the transaction commits, and
// to the sessions listening at that moment).
func (s *Store) Notify(ctx context.Context, channel, payload string) error {
	if s.db.d != postgresDialect {
		return fmt.Errorf("notify %s: %s has no NOTIFY", channel, s.db.d.name)
	}
	if _, err := s.db.ExecContext(ctx, `SELECT pg_notify(?, ?)`, channel, payload); err != nil {
		return fmt.Errorf("notify %s: %w", channel, err)
	}
	return nil
}
