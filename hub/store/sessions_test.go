package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestSessions: a session names its token's row and holds neither the
// session id nor the token; it ends at logout, at its fixed expiry, and
// when its token is revoked, on every store of the database at once.
// Agent tokens and revoked or unknown tokens open none.
func TestSessions(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		a, b := open(t, dsn), open(t, dsn) // two hubs
		clock := &fakeClock{t: time.Now()}
		a.now, b.now = clock.now, clock.now
		tok, err := a.CreateToken(ctx, KindAPI, "alice")
		if err != nil {
			t.Fatal(err)
		}
		who, err := a.AuthenticateClient(ctx, tok)
		if err != nil || who.ID == 0 {
			t.Fatalf("AuthenticateClient = %+v, %v", who, err)
		}
		id, err := a.CreateSession(ctx, who.ID, time.Hour, 100)
		if err != nil || len(id) < 43 {
			t.Fatalf("CreateSession = %q, %v", id, err)
		}
		var idHash string
		var tokenID int64
		if err := a.db.QueryRowContext(ctx, `SELECT id_hash, token_id FROM sessions`).Scan(&idHash, &tokenID); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(idHash, id) || idHash != hashToken(id) || tokenID != who.ID {
			t.Errorf("session row %q, token %d: want sha256 of the id and the token's row", idHash, tokenID)
		}
		if got, err := b.Session(ctx, id); err != nil || got != who.ID {
			t.Fatalf("the session at the other hub: %d, %v", got, err)
		}
		if tk, err := b.ClientTokenByID(ctx, who.ID); err != nil || tk.Subject != "alice" || tk.Kind != KindAPI {
			t.Errorf("ClientTokenByID = %+v, %v", tk, err)
		}
		for name, bad := range map[string]string{"unknown": id + "x", "empty": ""} {
			if _, err := b.Session(ctx, bad); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("%s session id: %v", name, err)
			}
		}

		// Logout at one hub ends it at the other.
		if err := b.EndSession(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Session(ctx, id); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("a session after logout: %v", err)
		}

		// Expiry is fixed: an hour from the login, however used.
		id, _ = a.CreateSession(ctx, who.ID, time.Hour, 100)
		clock.add(59 * time.Minute)
		if _, err := b.Session(ctx, id); err != nil {
			t.Fatalf("a session before its expiry: %v", err)
		}
		clock.add(time.Minute)
		if _, err := b.Session(ctx, id); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("an expired session: %v", err)
		}
		// The next login deletes it.
		id2, _ := a.CreateSession(ctx, who.ID, time.Hour, 100)
		if n := count(t, a, `SELECT count(*) FROM sessions`); n != 1 {
			t.Errorf("%d sessions after a login following an expiry; want 1", n)
		}

		// Revoking the token ends its sessions everywhere, and opens no
		// new one; nor do agent tokens.
		if _, err := a.RevokeTokens(ctx, KindAPI, "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Session(ctx, id2); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("a session of a revoked token: %v", err)
		}
		if _, err := b.ClientTokenByID(ctx, who.ID); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("ClientTokenByID of a revoked token: %v", err)
		}
		if _, err := a.CreateSession(ctx, who.ID, time.Hour, 100); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("a session for a revoked token: %v", err)
		}
		agentTok, _ := a.CreateToken(ctx, KindAgent, "prod")
		agent, _ := a.lookup(ctx, agentTok, KindAgent)
		if _, err := a.CreateSession(ctx, agent.ID, time.Hour, 100); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("a session for an agent token: %v", err)
		}
		if _, err := a.ClientTokenByID(ctx, agent.ID); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("ClientTokenByID of an agent token: %v", err)
		}
		if _, err := a.CreateSession(ctx, 12345, time.Hour, 100); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("a session for no token: %v", err)
		}
		// Retention deletes the revoked token's session.
		if p, err := a.Prune(ctx, clock.now().Add(-time.Hour)); err != nil || p.Sessions != 1 {
			t.Errorf("Prune = %+v, %v; want the revoked token's session", p, err)
		}
	})
}

// TestSessionsBound: beyond the limit the oldest sessions go, and the
// newest stay usable.
func TestSessionsBound(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		clock := &fakeClock{t: time.Now()}
		s.now = clock.now
		tok, _ := s.CreateToken(ctx, KindAPI, "alice")
		who, _ := s.AuthenticateClient(ctx, tok)
		const limit = 5
		var ids []string
		for range limit + 3 {
			id, err := s.CreateSession(ctx, who.ID, time.Hour, limit)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
			clock.add(time.Millisecond)
		}
		if n := count(t, s, `SELECT count(*) FROM sessions`); n != limit {
			t.Errorf("%d sessions, limit %d", n, limit)
		}
		for i, id := range ids {
			_, err := s.Session(ctx, id)
			if old := i < 3; old != errors.Is(err, ErrInvalidToken) {
				t.Errorf("session %d (oldest first): %v", i, err)
			}
		}
		// Expired sessions go with the leader's retention too.
		clock.add(time.Hour)
		if p, err := s.Prune(ctx, clock.now().Add(-24*time.Hour)); err != nil || p.Sessions != limit {
			t.Errorf("Prune = %+v, %v; want %d expired sessions", p, err, limit)
		}
	})
}

func count(t *testing.T, s *Store, q string) int {
	t.Helper()
	var n int
	if err := s.db.QueryRowContext(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
