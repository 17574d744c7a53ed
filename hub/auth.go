package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

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

// Who may read what: badges and /healthz answer anyone; the page, the JSON
// API and /metrics need an API token, as "Authorization: Bearer <token>" or
// through a session of the page's login form, unless the hub runs with
// Options.PublicRead; writes (resync) always need a bearer API token. Agent
// tokens open the channel and nothing else.

// bearer is the request's bearer token, or "".
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// apiToken checks token as an API token and returns its client's name.
// store.ErrInvalidToken means the token is no good; any other error is the
// store's.
func (s *Server) apiToken(ctx context.Context, token string) (string, error) {
	return s.store.Authenticate(ctx, store.KindAPI, token)
}

// reader returns who is reading: the client of the bearer API token or of
// the session cookie. ok is false when neither is valid, and err is set
// when the store could not tell.
func (s *Server) reader(r *http.Request) (client string, ok bool, err error) {
	if tok := bearer(r); tok != "" {
		client, err := s.apiToken(r.Context(), tok)
		if errors.Is(err, store.ErrInvalidToken) {
			return "", false, nil
		}
		return client, err == nil, err
	}
	return s.sessions.check(r, s.apiToken)
}

// readers guards a read-only handler: it runs for anyone under PublicRead,
// else only for a valid API token or session. Refusals carry nothing of
// the hub's data.
func (s *Server) readers(page bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opt.PublicRead {
			h(w, r)
			return
		}
		_, ok, err := s.reader(r)
		switch {
		case err != nil:
			s.log.Error("authenticate reader", "error", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
		case ok:
			h(w, r)
		case page:
			// A person at a browser: the 401 is the login form.
			s.serveLogin(w, r, http.StatusUnauthorized, "")
		default:
			unauthorized(w)
		}
	}
}

// unauthorized answers 401 for a missing or invalid API token.
func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="tether-hub"`)
	apiError(w, http.StatusUnauthorized, "a valid API token is required (tether hub token create --api --name NAME)")
}

// apiClient checks the bearer API token and returns its client's name, or
// answers 401. Sessions do not count: a write needs the token itself, so a
// page open in a browser can never be made to write (no CSRF).
func (s *Server) apiClient(w http.ResponseWriter, r *http.Request) (string, bool) {
	if tok := bearer(r); tok != "" {
		name, err := s.apiToken(r.Context(), tok)
		if err == nil {
			return name, true
		}
		if !errors.Is(err, store.ErrInvalidToken) {
			s.internal(w, "authenticate API client", err)
			return "", false
		}
	}
	unauthorized(w)
	return "", false
}
