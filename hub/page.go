package hub

import (
	_ "embed"
	"html/template"
	"net/http"
	"strings"
	"time"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/hub/store"
)

// styleHTML defines the template "style" both pages include.
//
//go:embed style.html
var styleHTML string

//go:embed page.html
var pageHTML string

// pageTemplate escapes every value (html/template): names, URLs and error
// messages come from agents and Git.
var pageTemplate = template.Must(template.Must(template.New("page").Parse(pageHTML)).Parse(styleHTML))

type pageData struct {
	Refresh  int
	Now      string
	Agents   []AgentJSON
	GitSyncs []pageGitSync
	// SignedIn shows the sign-out button (not under PublicRead).
	SignedIn bool
}

type pageGitSync struct {
	ID, Agent, Namespace, Name string
	SourceURL, Ref, Path       string
	Revision, Short            string
	Status                     string
	DriftCount                 int
	Error                      string
	BadgeSrc                   string
	// Href is the GitSync's page, relative to the hub's root.
	Href string
}

// servePage serves GET /: agents and GitSyncs, refreshing itself. It needs
// nothing from outside the hub (no scripts, fonts or stylesheets).
func (s *Server) servePage(w http.ResponseWriter, r *http.Request, who Principal) {
	ctx := r.Context()
	as, err := s.store.Agents(ctx)
	if err == nil {
		as, err = s.agentsSeen(ctx, who, as)
	}
	if err != nil {
		s.internalPage(w, "page agents", err)
		return
	}
	gs, err := s.gitsyncsSeen(ctx, who, "")
	if err != nil {
		s.internalPage(w, "page gitsyncs", err)
		return
	}
	d := pageData{Refresh: int(s.opt.PageRefresh / time.Second), Now: time.Now().UTC().Format(time.RFC3339)}
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" && !s.opt.PublicRead {
		d.SignedIn = true
	}
	if d.Refresh < 1 {
		d.Refresh = 1
	}
	for _, a := range as {
		d.Agents = append(d.Agents, AgentJSON{Name: a.Name, Connected: s.isConnected(a.Name), LastSeen: a.LastSeen,
			Version: a.Version, ClusterUID: a.ClusterUID})
	}
	for _, g := range gs {
		p := pageGitSync{
			ID: gitsyncID(g.Agent, g.Namespace, g.Name), Agent: g.Agent, Namespace: g.Namespace, Name: g.Name,
			SourceURL: v1alpha1.RedactURL(g.SourceURL), Ref: g.Ref, Path: g.Path, Revision: g.Revision,
			Status: badgeState(g, s.isConnected(g.Agent)), DriftCount: g.DriftCount,
			// Relative, so the page works behind a path prefix too.
			BadgeSrc: strings.TrimPrefix(badgePath(g.Agent, g.Namespace, g.Name), "/"),
			Href:     strings.TrimPrefix(gitsyncPath(g.Agent, g.Namespace, g.Name), "/"),
		}
		if sha := store.SHA(g.Revision); sha != "" {
			p.Short = sha[:7]
		}
		if g.Phase == badgeFailed || g.Phase == badgeUnknown {
			p.Error = v1alpha1.RedactString(g.Message)
		}
		d.GitSyncs = append(d.GitSyncs, p)
	}
	setPageHeaders(w, "text/html; charset=utf-8")
	if err := pageTemplate.Execute(w, d); err != nil {
		s.log.Error("page", "error", err)
	}
}

// setPageHeaders are the headers of every HTML answer: no caching (it
// shows what a token may see), no script, no framing (a login form in a
// frame is clickjacking), forms only to the hub.
func setPageHeaders(w http.ResponseWriter, contentType string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
}

func (s *Server) internalPage(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, "error", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}
