package hub

import (
	"context"
	"errors"
	"fmt"

	"tether.dev/tether/hub/store"
)

// ErrUnauthenticated is returned by Authenticate for a token that is
// unknown, revoked, or not an agent token.
var ErrUnauthenticated = errors.New("unauthenticated: invalid or revoked agent token")

// Authenticate returns the name of the agent a valid agent token was issued
// to. It reads the store on every call, so a revocation takes effect on the
// next call. The channel server must still check that the agent's Hello
// names that same agent.
func (s *Server) Authenticate(ctx context.Context, token string) (string, error) {
	name, err := s.store.Authenticate(ctx, store.KindAgent, token)
	if errors.Is(err, store.ErrInvalidToken) {
		return "", ErrUnauthenticated
	}
	if err != nil {
		return "", fmt.Errorf("authenticate agent: %w", err)
	}
	return name, nil
}
