package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// Token kinds: an agent token lets one agent open the channel; an API token
// lets a person or a CI job call the hub's write API (resync). Neither
// works in the other's place.
const (
	KindAgent = "agent"
	KindAPI   = "api"
)

// ErrInvalidToken is returned for a token that is unknown, revoked or of the
// wrong kind. It says no more, on purpose.
var ErrInvalidToken = errors.New("invalid token")

// tokenBytes is the entropy of a token: 32 random bytes, 43 characters of
// base64url.
const tokenBytes = 32

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// CreateToken makes a new random token for subject (an agent name for
// KindAgent) and stores only its hash. The token is returned once and can
// never be read back. Existing tokens of the subject stay valid, so a token
// can be rotated without downtime: create, roll out, revoke the old.
func (s *Store) CreateToken(ctx context.Context, kind, subject string) (string, error) {
	if kind != KindAgent && kind != KindAPI {
		return "", fmt.Errorf("token kind %q: want %q or %q", kind, KindAgent, KindAPI)
	}
	if subject == "" {
		return "", fmt.Errorf("%s token: a name is required", kind)
	}
	buf := make([]byte, tokenBytes)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("%s token for %s: %w", kind, subject, err)
	}
	token := base64.RawURLEncoding.EncodeToString(buf)
	h := hashToken(token)
	now := ms(s.now())
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO tokens(kind, subject, lookup, hash, created) VALUES (?, ?, ?, ?, ?)`,
		kind, subject, h[:16], h, now); err != nil {
		return "", fmt.Errorf("%s token for %s: %w", kind, subject, err)
	}
	if kind == KindAgent {
		// The agent shows in the lists (never connected) from now on.
		if _, err := tx.ExecContext(ctx, `INSERT INTO agents(name, created) VALUES (?, ?) ON CONFLICT(name) DO NOTHING`, subject, now); err != nil {
			return "", fmt.Errorf("agent %s: %w", subject, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("%s token for %s: %w", kind, subject, err)
	}
	return token, nil
}

// RevokeTokens revokes every valid token of subject and returns how many it
// revoked; ErrNotFound when there was none. The next Authenticate refuses
// them: nothing caches a token.
func (s *Store) RevokeTokens(ctx context.Context, kind, subject string) (int, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE tokens SET revoked = ? WHERE kind = ? AND subject = ? AND revoked IS NULL`,
		ms(s.now()), kind, subject)
	if err != nil {
		return 0, fmt.Errorf("%s tokens of %s: %w", kind, subject, err)
	}
	n, _ := res.RowsAffected()
	if n == 0 {
		return 0, fmt.Errorf("%s %s has no valid token: %w", kind, subject, ErrNotFound)
	}
	return int(n), nil
}

// Authenticate returns the subject a valid token of this kind was issued to,
// or ErrInvalidToken.
func (s *Store) Authenticate(ctx context.Context, kind, token string) (string, error) {
	if token == "" {
		return "", ErrInvalidToken
	}
	h := hashToken(token)
	// The index finds candidates by a prefix of the hash; the full hash is
	// compared in constant time.
	rows, err := s.db.QueryContext(ctx, `SELECT subject, hash FROM tokens WHERE lookup = ? AND kind = ? AND revoked IS NULL`, h[:16], kind)
	if err != nil {
		return "", fmt.Errorf("token lookup: %w", err)
	}
	defer rows.Close()
	subject := ""
	for rows.Next() {
		var sub, stored string
		if err := rows.Scan(&sub, &stored); err != nil {
			return "", fmt.Errorf("token lookup: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(stored), []byte(h)) == 1 {
			subject = sub
		}
	}
	if err := rows.Err(); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("token lookup: %w", err)
	}
	if subject == "" {
		return "", ErrInvalidToken
	}
	return subject, nil
}
