package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// Sessions are the hub page's sign-ins, shared by every hub on the
// database: a login on one hub is known to all, a logout on one ends it on
// all. A session row holds the sha256 of its id (the id itself is only in
// the browser's cookie) and the row id of the token it was signed in with
// (never the token): revoking the token ends its sessions at once, on
// every hub. A session lasts a fixed time from its login, never extended.

// CreateSession starts a session for the valid client token whose row is
// tokenID, lasting ttl from now, and returns its id: 32 random bytes,
// base64url, returned once and stored only as a hash. In the same
// transaction the expired sessions are deleted and, beyond limit
// sessions, the oldest. ErrInvalidToken when the token is unknown or
// revoked.
func (s *Store) CreateSession(ctx context.Context, tokenID int64, ttl time.Duration, limit int) (string, error) {
	buf := make([]byte, tokenBytes)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("session: %w", err)
	}
	id := base64.RawURLEncoding.EncodeToString(buf)
	now := s.now()
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("session: %w", err)
	}
	defer t.Rollback()
	if _, err := t.ExecContext(ctx, `DELETE FROM sessions WHERE expires <= ?`, ms(now)); err != nil {
		return "", fmt.Errorf("session: expired: %w", err)
	}
	res, err := t.ExecContext(ctx, `INSERT INTO sessions(id_hash, token_id, created, expires)
		SELECT CAST(? AS TEXT), id, CAST(? AS BIGINT), CAST(? AS BIGINT) FROM tokens WHERE id = ? AND revoked IS NULL AND kind IN (?, ?, ?)`,
		hashToken(id), ms(now), ms(now.Add(ttl)), tokenID, KindAPI, KindProject, KindUser)
	if err != nil {
		return "", fmt.Errorf("session: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return "", ErrInvalidToken
	}
	var n int
	if err := t.QueryRowContext(ctx, `SELECT count(*) FROM sessions`).Scan(&n); err != nil {
		return "", fmt.Errorf("session: %w", err)
	}
	if n > limit {
		if _, err := t.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash IN (
			SELECT id_hash FROM sessions ORDER BY created, id_hash LIMIT ?)`, n-limit); err != nil {
			return "", fmt.Errorf("session: the oldest beyond %d: %w", limit, err)
		}
	}
	if err := t.Commit(); err != nil {
		return "", fmt.Errorf("session: %w", err)
	}
	return id, nil
}

// Session returns the row id of the token a live session was signed in
// with; ErrInvalidToken when the id is unknown, the session ended or
// expired, or the token was revoked.
func (s *Store) Session(ctx context.Context, id string) (int64, error) {
	if id == "" {
		return 0, ErrInvalidToken
	}
	var tokenID int64
	err := s.db.QueryRowContext(ctx, `SELECT s.token_id FROM sessions s JOIN tokens t ON t.id = s.token_id
		WHERE s.id_hash = ? AND s.expires > ? AND t.revoked IS NULL`, hashToken(id), ms(s.now())).Scan(&tokenID)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrInvalidToken
	}
	if err != nil {
		// The error names no part of the id.
		return 0, fmt.Errorf("session: %w", err)
	}
	return tokenID, nil
}

// EndSession ends a session (a logout), on every hub; an unknown id is no
// error.
func (s *Store) EndSession(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE id_hash = ?`, hashToken(id)); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}
