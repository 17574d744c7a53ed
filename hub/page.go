package hub

import (
	_ "embed"
	"html/template"
	"net/http"
	"strings"
	"time"

	"tether.dev/tether/hub/store"
)

//go:embed page.html
var pageHTML string

// pageTemplate escapes every value (html/template): names, URLs and error
// messages come from agents and Git.
var pageTemplate = template.Must(template.New("page").Parse(pageHTML))

type pageData struct {
	Refresh  int
	Now      string
	Agents   []AgentJSON
	GitSyncs []pageGitSync
}

type pageGitSync struct {
	ID, Agent, Namespace, Name string
	SourceURL, Ref, Path       string
	Revision, Short            string
	Status                     string
	DriftCount                 int
	Error                      string
	BadgeSrc                   string
}

// servePage serves GET /: agents and GitSyncs, refreshing itself. It needs
// nothing from outside the hub (no scripts, fonts or stylesheets).
func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	as, err := s.store.Agents(ctx)
	if err != nil {
		s.internalPage(w, "page agents", err)
		return
	}
	gs, err := s.store.GitSyncs(ctx, "")
	if err != nil {
		s.internalPage(w, "page gitsyncs", err)
		return
	}
	d := pageData{Refresh: int(s.opt.PageRefresh / time.Second), Now: time.Now().UTC().Format(time.RFC3339)}
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
			SourceURL: g.SourceURL, Ref: g.Ref, Path: g.Path, Revision: g.Revision,
			Status: badgeState(g, s.isConnected(g.Agent)), DriftCount: g.DriftCount,
			// Relative, so the page works behind a path prefix too.
			BadgeSrc: strings.TrimPrefix(badgePath(g.Agent, g.Namespace, g.Name), "/"),
		}
		if sha := store.SHA(g.Revision); sha != "" {
			p.Short = sha[:7]
		}
		if g.Phase == badgeFailed || g.Phase == badgeUnknown {
			p.Error = g.Message
		}
		d.GitSyncs = append(d.GitSyncs, p)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'")
	if err := pageTemplate.Execute(w, d); err != nil {
		s.log.Error("page", "error", err)
	}
}

func (s *Server) internalPage(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, "error", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}
