package store

import (
	"context"
	"fmt"
	"time"
)

// Agent is one cluster's agent as the hub knows it.
type Agent struct {
	Name       string    `json:"name"`
	Connected  bool      `json:"connected"`
	LastSeen   time.Time `json:"lastSeen,omitzero"`
	Version    string    `json:"version,omitempty"`
	ClusterUID string    `json:"clusterUID,omitempty"`
}

// AgentConnected records that agent opened its channel.
func (s *Store) AgentConnected(ctx context.Context, name, version, clusterUID string) error {
	now := ms(s.now())
	_, err := s.db.ExecContext(ctx, `INSERT INTO agents(name, connected, last_seen, version, cluster_uid, created)
		VALUES (?, 1, ?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET connected = 1, last_seen = excluded.last_seen,
			version = excluded.version, cluster_uid = excluded.cluster_uid`,
		name, now, version, clusterUID, now)
	if err != nil {
		return fmt.Errorf("agent %s connected: %w", name, err)
	}
	return nil
}

// AgentDisconnected records that agent's last channel closed.
func (s *Store) AgentDisconnected(ctx context.Context, name string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE agents SET connected = 0, last_seen = ? WHERE name = ?`, ms(s.now()), name)
	if err != nil {
		return fmt.Errorf("agent %s disconnected: %w", name, err)
	}
	return nil
}

// DisconnectAll marks every agent disconnected; the hub calls it at start,
// when no stream can be open yet.
func (s *Store) DisconnectAll(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `UPDATE agents SET connected = 0 WHERE connected = 1`)
	return err
}

// Agents lists every agent by name.
func (s *Store) Agents(ctx context.Context) ([]Agent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, connected, last_seen, version, cluster_uid FROM agents ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("agents: %w", err)
	}
	defer rows.Close()
	out := []Agent{}
	for rows.Next() {
		var a Agent
		var seen int64
		if err := rows.Scan(&a.Name, &a.Connected, &seen, &a.Version, &a.ClusterUID); err != nil {
			return nil, fmt.Errorf("agents: %w", err)
		}
		a.LastSeen = fromMS(seen)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Agent returns one agent, or ErrNotFound.
func (s *Store) Agent(ctx context.Context, name string) (Agent, error) {
	a := Agent{Name: name}
	var seen int64
	err := s.db.QueryRowContext(ctx, `SELECT connected, last_seen, version, cluster_uid FROM agents WHERE name = ?`, name).
		Scan(&a.Connected, &seen, &a.Version, &a.ClusterUID)
	if err != nil {
		return Agent{}, notFound(err, "agent "+name)
	}
	a.LastSeen = fromMS(seen)
	return a, nil
}
