package hub

import (
	_ "embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"time"

	"tether.dev/tether/hub/store"
)

// sessionCookie names the page's session cookie. It holds a random
// session id; the API token stays on the hub.
const sessionCookie = "tether_session"

// Session limits: a session lasts sessionTTL from its login (no sliding:
// a stolen cookie ages out), and the hub keeps at most maxSessions, the
// oldest going first.
const (
	sessionTTL   = 12 * time.Hour
	maxSessions  = 10000
	maxLoginForm = 4 << 10
)

// Sessions live in the store (store.CreateSession), shared by every hub
// on the database: a login at one replica is good at all, a logout or a
// revoked token ends it at all, and a restart signs no one out. A session
// row holds the sha256 of its id and the id of its token's row, never the
// id or the token: the token is read again, by its row, on every request.

// session returns the principal of the request's session: unknown,
// expired, ended or revoked sessions are not ok. The token is read on
// every request, so a revocation or a changed project counts at once.
func (s *Server) session(r *http.Request) (Principal, bool, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return Principal{}, false, nil
	}
	sp, ok := s.principals.(SessionPrincipals)
	if !ok {
		return Principal{}, false, nil
	}
	id, err := s.store.Session(r.Context(), c.Value)
	if errors.Is(err, store.ErrInvalidToken) {
		return Principal{}, false, nil
	}
	if err != nil {
		return Principal{}, false, err
	}
	p, err := sp.PrincipalByID(r.Context(), id)
	if errors.Is(err, store.ErrInvalidToken) {
		return Principal{}, false, nil
	}
	if err != nil {
		return Principal{}, false, err
	}
	return p, true, nil
}

//go:embed login.html
var loginHTML string

var loginTemplate = template.Must(template.New("login").Parse(loginHTML))

// serveLogin shows the login form with code and, after a failed attempt,
// why.
func (s *Server) serveLogin(w http.ResponseWriter, _ *http.Request, code int, problem string) {
	setPageHeaders(w, "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := loginTemplate.Execute(w, struct{ Problem string }{problem}); err != nil {
		s.log.Error("login page", "error", err)
	}
}

// login serves POST /login: an API token in the form field "token" starts
// a session, set as an HttpOnly, SameSite=Strict cookie (Secure when the
// hub is reached over HTTPS), and goes to the page.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !s.sameOrigin(r) {
		http.Error(w, "cross-site login refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLoginForm)
	if err := r.ParseForm(); err != nil {
		s.serveLogin(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	sp, ok := s.principals.(SessionPrincipals)
	if !ok {
		s.serveLogin(w, r, http.StatusNotImplemented, "This hub's tokens cannot sign in to the page: send one as a bearer token.")
		return
	}
	p, tokenID, err := sp.PrincipalID(r.Context(), r.PostForm.Get("token"))
	switch {
	case errors.Is(err, store.ErrInvalidToken):
		s.log.Info("page login refused", "remote", r.RemoteAddr)
		s.serveLogin(w, r, http.StatusUnauthorized, "That is not a valid hub token.")
		return
	case err != nil:
		s.internalPage(w, "page login", err)
		return
	case !p.Can(ActionRead):
		s.log.Info("page login refused: no read action", "principal", p.Name, "kind", p.Kind)
		s.serveLogin(w, r, http.StatusForbidden, "That token may not read (it lacks the read action).")
		return
	}
	id, err := s.store.CreateSession(r.Context(), tokenID, sessionTTL, maxSessions)
	switch {
	case errors.Is(err, store.ErrInvalidToken): // revoked a moment ago
		s.serveLogin(w, r, http.StatusUnauthorized, "That is not a valid hub token.")
		return
	case err != nil:
		s.internalPage(w, "page login", err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", MaxAge: int(sessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r),
	})
	s.log.Info("page login", "principal", p.Name, "kind", p.Kind)
	seeOther(w, "./")
}

// logout serves POST /logout: it ends the session and clears the cookie.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if !s.sameOrigin(r) {
		http.Error(w, "cross-site logout refused", http.StatusForbidden)
		return
	}
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		if err := s.store.EndSession(r.Context(), c.Value); err != nil {
			s.internalPage(w, "page logout", err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
	seeOther(w, "login")
}

// seeOther redirects to a location relative to the hub's root, as is:
// http.Redirect would make it absolute, which breaks a hub behind a path
// prefix.
func seeOther(w http.ResponseWriter, location string) {
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusSeeOther)
}

// secure is whether the browser reaches the hub over HTTPS: directly, or
// through a proxy when the external URL says so.
func (s *Server) secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	u, err := url.Parse(s.opt.ExternalURL)
	return err == nil && u.Scheme == "https"
}

// sameOrigin refuses a form posted from another site (login CSRF; the
// SameSite cookie already covers logout): its Origin must be the hub, as
// the request or the external URL names it. Browsers send Origin on every
// POST; a request without one comes from a script, not a page.
func (s *Server) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		site := r.Header.Get("Sec-Fetch-Site")
		return site == "" || site == "same-origin"
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	ext, _ := url.Parse(s.opt.ExternalURL)
	return u.Host == r.Host || (ext != nil && u.Host == ext.Host)
}
