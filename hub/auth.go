package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
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
// API and /metrics need a token with the read action (operators' API
// tokens, project and user tokens), as "Authorization: Bearer <token>" or
// through a session of the page's login form, unless the hub runs with
// Options.PublicRead; a project token reads only its own GitSyncs. The
// resync API needs a bearer token with the resync action (the page's
// resync button a session with it, from the hub's own origin). Agent
// tokens open the channel and nothing else.

// bearer is the request's bearer token, or "".
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// reader returns who is calling: the principal of the bearer token or of
// the session cookie. ok is false when neither is valid, and err is set
// when the store could not tell.
func (s *Server) reader(r *http.Request) (p Principal, ok bool, err error) {
	if tok := bearer(r); tok != "" {
		p, err := s.principals.Principal(r.Context(), tok)
		if errors.Is(err, store.ErrInvalidToken) {
			return Principal{}, false, nil
		}
		return p, err == nil, err
	}
	return s.session(r)
}

// anonymous reads everything under PublicRead, and does nothing else.
var anonymous = Principal{Kind: KindUser, Name: "anonymous", Actions: []Action{ActionRead}}

// readHandler is a read-only handler told who reads.
type readHandler func(w http.ResponseWriter, r *http.Request, p Principal)

// readers guards a read-only handler: it runs for anyone under PublicRead
// (who then sees everything), else only for a token or session with the
// read action. Refusals carry nothing of the hub's data.
func (s *Server) readers(page bool, h readHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok, err := s.reader(r)
		switch {
		case err != nil:
			s.log.Error("authenticate reader", "error", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
		case s.opt.PublicRead:
			pub := anonymous
			if ok && p.Can(ActionResync) {
				// Only for the page's resync button; the button's
				// POST checks the session again.
				pub.Actions = append(slices.Clone(pub.Actions), ActionResync)
			}
			h(w, r, pub)
		case ok && p.Can(ActionRead):
			h(w, r, p)
		case ok:
			forbidden(w, "this token lacks the read action")
		case page:
			// A person at a browser: the 401 is the login form.
			s.serveLogin(w, r, http.StatusUnauthorized, "")
		default:
			unauthorized(w)
		}
	}
}

// unauthorized answers 401 for a missing or invalid token.
func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="tether-hub"`)
	apiError(w, http.StatusUnauthorized, "a valid hub token is required (tether hub token create --api --name NAME, or --project/--user with --actions)")
}

// forbidden answers 403: the token is valid, the action is not its.
func forbidden(w http.ResponseWriter, why string) {
	apiError(w, http.StatusForbidden, why)
}

// apiClient checks the bearer token and returns its principal, or answers
// 401. Sessions do not count: the API's writes need the token itself, so a
// page open in a browser can never be made to write through them.
func (s *Server) apiClient(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	if tok := bearer(r); tok != "" {
		p, err := s.principals.Principal(r.Context(), tok)
		if err == nil {
			return p, true
		}
		if !errors.Is(err, store.ErrInvalidToken) {
			s.internal(w, "authenticate API client", err)
			return Principal{}, false
		}
	}
	unauthorized(w)
	return Principal{}, false
}
