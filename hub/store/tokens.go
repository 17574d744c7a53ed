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
	"slices"
	"strings"
)

// Token kinds: an agent token lets one agent open the channel; an API token
// lets a person or a CI job call the hub's write API (resync). Neither
// works in the other's place.
// Project and user tokens are scoped: they carry their actions (see
// CreateScopedToken), and a project token names a project of the store.
const (
	KindAgent   = "agent"
	KindAPI     = "api"
	KindProject = "project"
	KindUser    = "user"
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
		// Scoped kinds need their actions: CreateScopedToken.
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
	t, err := s.lookup(ctx, token, kind)
	return t.Subject, err
}

// Token is what a valid token was issued as.
type Token struct {
	// ID is the token's row: page sessions name the token by it.
	ID      int64
	Kind    string
	Subject string
	// Actions are a scoped token's actions; empty for agent and API tokens.
	Actions []string
}

// AuthenticateClient returns what a valid API, project or user token was
// issued as, or ErrInvalidToken (agent tokens too: they open the channel
// and nothing else).
func (s *Store) AuthenticateClient(ctx context.Context, token string) (Token, error) {
	return s.lookup(ctx, token, KindAPI, KindProject, KindUser)
}

func (s *Store) lookup(ctx context.Context, token string, kinds ...string) (Token, error) {
	if token == "" {
		return Token{}, ErrInvalidToken
	}
	h := hashToken(token)
	// The index finds candidates by a prefix of the hash; the full hash is
	// compared in constant time.
	rows, err := s.db.QueryContext(ctx, `SELECT id, kind, subject, hash, actions FROM tokens WHERE lookup = ? AND revoked IS NULL`, h[:16])
	if err != nil {
		return Token{}, fmt.Errorf("token lookup: %w", err)
	}
	defer rows.Close()
	var found Token
	for rows.Next() {
		var id int64
		var kind, sub, stored, actions string
		if err := rows.Scan(&id, &kind, &sub, &stored, &actions); err != nil {
			return Token{}, fmt.Errorf("token lookup: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(stored), []byte(h)) == 1 && slices.Contains(kinds, kind) {
			found = Token{ID: id, Kind: kind, Subject: sub}
			if actions != "" {
				found.Actions = strings.Split(actions, ",")
			}
		}
	}
	if err := rows.Err(); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("token lookup: %w", err)
	}
	if found.Subject == "" {
		return Token{}, ErrInvalidToken
	}
	return found, nil
}

// ClientTokenByID returns what the valid API, project or user token with
// row id was issued as, or ErrInvalidToken (unknown, revoked, or an agent
// token).
func (s *Store) ClientTokenByID(ctx context.Context, id int64) (Token, error) {
	t := Token{ID: id}
	var actions string
	err := s.db.QueryRowContext(ctx, `SELECT kind, subject, actions FROM tokens
		WHERE id = ? AND revoked IS NULL AND kind IN (?, ?, ?)`, id, KindAPI, KindProject, KindUser).Scan(&t.Kind, &t.Subject, &actions)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, ErrInvalidToken
	}
	if err != nil {
		return Token{}, fmt.Errorf("token %d: %w", id, err)
	}
	if actions != "" {
		t.Actions = strings.Split(actions, ",")
	}
	return t, nil
}

// CreateScopedToken makes a token for a project (which must exist) or a
// user, allowed actions (non-empty), and stores only its hash. Like
// CreateToken it returns the token once.
func (s *Store) CreateScopedToken(ctx context.Context, kind, subject string, actions []string) (string, error) {
	if kind != KindProject && kind != KindUser {
		return "", fmt.Errorf("scoped token kind %q: want %q or %q", kind, KindProject, KindUser)
	}
	if subject == "" {
		return "", fmt.Errorf("%s token: a name is required", kind)
	}
	if len(actions) == 0 {
		return "", fmt.Errorf("%s token for %s: at least one action is required", kind, subject)
	}
	for _, a := range actions {
		if a == "" || strings.Contains(a, ",") {
			return "", fmt.Errorf("%s token for %s: bad action %q", kind, subject, a)
		}
	}
	if kind == KindProject {
		if _, err := s.Project(ctx, subject); err != nil {
			return "", fmt.Errorf("project token for %s: %w (create it first: tether hub project create --name %s --repo URL)", subject, err, subject)
		}
	}
	buf := make([]byte, tokenBytes)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("%s token for %s: %w", kind, subject, err)
	}
	token := base64.RawURLEncoding.EncodeToString(buf)
	h := hashToken(token)
	if _, err := s.db.ExecContext(ctx, `INSERT INTO tokens(kind, subject, lookup, hash, created, actions) VALUES (?, ?, ?, ?, ?, ?)`,
		kind, subject, h[:16], h, ms(s.now()), strings.Join(actions, ",")); err != nil {
		return "", fmt.Errorf("%s token for %s: %w", kind, subject, err)
	}
	return token, nil
}
