package hub

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"sync"
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

// session is one browser signed in with an API token. The token is kept so
// that its revocation ends the session on the next request.
type session struct {
	token   string
	expires time.Time
}

// sessions are the page's sign-ins, in memory: a hub restart signs
// everyone out, which costs a login and keeps no session in the database.
type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	now func() time.Time
}

func newSessions() *sessions {
	return &sessions{m: map[string]*session{}, now: time.Now}
}

// create starts a session for a token and returns its id.
func (ss *sessions) create(token string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := base64.RawURLEncoding.EncodeToString(b)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	for k, s := range ss.m {
		if now.After(s.expires) {
			delete(ss.m, k)
		}
	}
	if len(ss.m) >= maxSessions {
		var oldest string
		for k, s := range ss.m {
			if oldest == "" || s.expires.Before(ss.m[oldest].expires) {
				oldest = k
			}
		}
		delete(ss.m, oldest)
	}
	ss.m[id] = &session{token: token, expires: now.Add(sessionTTL)}
	return id, nil
}

// check returns the principal of the request's session: unknown, expired
// or revoked sessions are not ok (and a revoked one is forgotten). The
// token is checked on every request, so a changed project counts at once.
func (ss *sessions) check(r *http.Request, valid func(ctx context.Context, token string) (Principal, error)) (Principal, bool, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return Principal{}, false, nil
	}
	ss.mu.Lock()
	s := ss.m[c.Value]
	if s != nil && ss.now().After(s.expires) {
		delete(ss.m, c.Value)
		s = nil
	}
	ss.mu.Unlock()
	if s == nil {
		return Principal{}, false, nil
	}
	p, err := valid(r.Context(), s.token)
	if errors.Is(err, store.ErrInvalidToken) {
		ss.end(c.Value)
		return Principal{}, false, nil
	}
	if err != nil {
		return Principal{}, false, err
	}
	return p, true, nil
}

// end forgets a session.
func (ss *sessions) end(id string) {
	ss.mu.Lock()
	delete(ss.m, id)
	ss.mu.Unlock()
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
	token := r.PostForm.Get("token")
	p, err := s.principals.Principal(r.Context(), token)
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
	id, err := s.sessions.create(token)
	if err != nil {
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
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.end(c.Value)
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
