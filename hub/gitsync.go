package hub

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	_ "embed"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/server"
	"tether.dev/tether/channel/tunnel"
	"tether.dev/tether/hub/store"
)

//go:embed gitsync.html
var gitsyncHTML string

// gitsyncTemplate escapes every value, like the overview's.
var gitsyncTemplate = template.Must(template.Must(template.New("gitsync").Parse(gitsyncHTML)).Parse(styleHTML))

// historyOnPage is how many applied revisions a GitSync's page lists.
const historyOnPage = 20

type gitsyncPage struct {
	Refresh int
	Now     string
	// Root is the hub's root relative to the page (it may be served under
	// a path prefix).
	Root       string
	G          GitSyncJSON
	BadgeSrc   string
	Drifted    []DriftedJSON
	Namespaces []NamespaceCountJSON
	Conditions []ConditionJSON
	Events     []EventJSON
	History    []store.Deployment
	CanResync  bool
	ResyncPath string
	Notice     string
	SignedIn   bool
	// Live are the GitSync's objects now, from the agent's watch cache
	// through the tunnel; LiveNote says why there are none when the
	// agent could not be asked or refused.
	Live     []tunnel.LiveObject
	LiveNote string
}

// liveObjectsTimeout bounds the page's wait for the agent's answer: a
// slow agent makes the page say so, not hang.
const liveObjectsTimeout = 5 * time.Second

// resyncNotices are what the page says after its resync button: fixed
// texts keyed by a fixed word, so nothing of the query is reflected.
var resyncNotices = map[string]string{
	"sent":      "Sync requested: the agent syncs this GitSync now.",
	"forbidden": "This token may not resync this GitSync.",
	"offline":   "The agent is not connected; nothing was sent.",
	"unknown":   "The hub does not know this GitSync.",
	"failed":    "The request could not be delivered to the agent.",
}

// serveGitSync serves GET /gitsyncs/{agent}/{ns}/{name}: one GitSync, its
// objects as the latest report has them and as the agent's watch cache
// has them now (see liveObjects), its recent Warning events, the
// revisions it applied, and a resync button for whoever may resync. A
// GitSync the reader may not see is 404, like one that does not exist.
func (s *Server) serveGitSync(w http.ResponseWriter, r *http.Request, who Principal) {
	agent, ns, name := r.PathValue("agent"), r.PathValue("ns"), r.PathValue("name")
	g, err := s.store.GitSync(r.Context(), agent, ns, name)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !who.Sees(g.SourceURL)) {
		http.Error(w, "no such GitSync", http.StatusNotFound)
		return
	}
	if err != nil {
		s.internalPage(w, "gitsync page", err)
		return
	}
	hist, err := s.store.History(r.Context(), agent, ns, name, historyOnPage)
	if err != nil {
		s.internalPage(w, "gitsync page history", err)
		return
	}
	for i := range hist {
		hist[i].RepoURL = v1alpha1.RedactURL(hist[i].RepoURL)
	}
	events, err := s.recentEvents(r.Context(), agent, ns, name)
	if err != nil {
		s.internalPage(w, "gitsync page events", err)
		return
	}
	gj := s.gitsyncJSON(g)
	d := gitsyncPage{
		Refresh: max(int(s.opt.PageRefresh/time.Second), 1), Now: time.Now().UTC().Format(time.RFC3339),
		Root: "../../../", G: gj, Drifted: gj.Drifted, Namespaces: gj.Namespaces, Conditions: gj.Conditions,
		Events: events, History: hist,
		CanResync:  who.Can(ActionResync),
		ResyncPath: url.PathEscape(name) + "/resync",
		Notice:     resyncNotices[r.URL.Query().Get("resync")],
	}
	d.Live, d.LiveNote = s.liveObjects(r.Context(), who, agent, ns, name)
	d.BadgeSrc = d.Root + strings.TrimPrefix(gj.Badge, "/")
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" && !s.opt.PublicRead {
		d.SignedIn = true
	}
	setPageHeaders(w, "text/html; charset=utf-8")
	if err := gitsyncTemplate.Execute(w, d); err != nil {
		s.log.Error("gitsync page", "error", err)
	}
}

// liveObjects asks the agent, through its tunnel and as the page's reader,
// for the GitSync's objects now. The reader already passed the page's
// read check; the agent then decides again (the reader's granted identity
// must be allowed to get the GitSync). Anything short of an answer is a
// note for the page, never an error page.
func (s *Server) liveObjects(ctx context.Context, who Principal, agent, ns, name string) ([]tunnel.LiveObject, string) {
	if who.Name == anonymous.Name && who.Kind == anonymous.Kind {
		// Public pages have no caller the cluster owner could grant.
		return nil, "Live objects are shown to signed-in readers only."
	}
	s.mu.Lock()
	tunnels := s.tunnels
	s.mu.Unlock()
	if tunnels == nil {
		return nil, "The hub has no agent channel: live objects are not available."
	}
	m, err := tunnels.Tunnel(agent)
	switch {
	case errors.Is(err, server.ErrNotConnected):
		return nil, "The agent " + agent + " is not connected: live objects are not available until it is back."
	case errors.Is(err, server.ErrNoTunnel):
		return nil, "The agent " + agent + " does not serve live objects (upgrade it)."
	case err != nil:
		return nil, "The agent " + agent + " has no tunnel: live objects are not available."
	}
	ctx, cancel := context.WithTimeout(ctx, liveObjectsTimeout)
	defer cancel()
	objs, err := tunnel.GetObjects(ctx, m, callerOf(who), ns, name)
	var refused *tunnel.ErrAgentAnswer
	switch {
	case errors.As(err, &refused) && refused.Code == http.StatusForbidden:
		return nil, "The cluster does not let you read this GitSync's live objects: " + refused.Message
	case errors.As(err, &refused):
		return nil, fmt.Sprintf("The agent could not list the live objects (%d): %s", refused.Code, refused.Message)
	case errors.Is(err, context.DeadlineExceeded):
		return nil, fmt.Sprintf("The agent did not answer within %s.", liveObjectsTimeout)
	case err != nil:
		s.log.Warn("gitsync page: live objects", "agent", agent, "gitsync", ns+"/"+name, "error", err)
		return nil, "The agent could not be asked for the live objects; reload to retry."
	case !objs.Tracked:
		return nil, "The agent has not applied this GitSync since it started."
	}
	return objs.Items, ""
}

// pageResync serves POST /gitsyncs/{agent}/{ns}/{name}/resync, the page's
// resync button: a session (or bearer token) with the resync action, from
// the hub's own origin (the session cookie is SameSite=Strict as well),
// then back to the GitSync's page with a notice.
func (s *Server) pageResync(w http.ResponseWriter, r *http.Request) {
	if !s.sameOrigin(r) {
		http.Error(w, "cross-site resync refused", http.StatusForbidden)
		return
	}
	who, ok, err := s.reader(r)
	if err != nil {
		s.internalPage(w, "page resync", err)
		return
	}
	if !ok {
		s.serveLogin(w, r, http.StatusUnauthorized, "")
		return
	}
	name := r.PathValue("name")
	_, code, _ := s.requestResync(r.Context(), who, r.PathValue("agent"), r.PathValue("ns"), name, "the hub page")
	word := "failed"
	switch code {
	case http.StatusAccepted:
		word = "sent"
	case http.StatusForbidden:
		word = "forbidden"
	case http.StatusConflict:
		word = "offline"
	case http.StatusNotFound:
		word = "unknown"
	}
	seeOther(w, "../"+url.PathEscape(name)+"?resync="+word)
}

// gitsyncEvents serves GET /api/v1/agents/{agent}/gitsyncs/{ns}/{name}/events:
// the GitSync's recent Warning events, newest first.
func (s *Server) gitsyncEvents(w http.ResponseWriter, r *http.Request, who Principal) {
	agent, ns, name := r.PathValue("agent"), r.PathValue("ns"), r.PathValue("name")
	g, err := s.store.GitSync(r.Context(), agent, ns, name)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !who.Sees(g.SourceURL)) {
		apiError(w, http.StatusNotFound, "gitsync "+gitsyncID(agent, ns, name)+" is not known to the hub")
		return
	}
	if err != nil {
		s.internal(w, "gitsync events", err)
		return
	}
	events, err := s.recentEvents(r.Context(), agent, ns, name)
	if err != nil {
		s.internal(w, "gitsync events", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events})
}
