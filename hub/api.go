package hub

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/store"
)

// AgentJSON is an agent in GET /api/v1/agents.
type AgentJSON struct {
	Name       string    `json:"name"`
	Connected  bool      `json:"connected"`
	LastSeen   time.Time `json:"lastSeen,omitzero"`
	Version    string    `json:"version,omitempty"`
	ClusterUID string    `json:"clusterUID,omitempty"`
}

// GitSyncJSON is a GitSync in GET /api/v1/gitsyncs.
type GitSyncJSON struct {
	Agent             string `json:"agent"`
	Namespace         string `json:"namespace"`
	Name              string `json:"name"`
	SourceURL         string `json:"sourceURL"`
	Ref               string `json:"ref"`
	Path              string `json:"path,omitempty"`
	Revision          string `json:"revision"`
	AttemptedRevision string `json:"attemptedRevision,omitempty"`
	// Commit is the 40-hex sha of Revision.
	Commit string `json:"commit,omitempty"`
	// Phase is what the agent reported; Status is what the badge shows
	// (the phase, or offline when the agent is not connected).
	Phase      string `json:"phase"`
	Status     string `json:"status"`
	Message    string `json:"message,omitempty"`
	DriftCount int    `json:"driftCount"`
	// WarningEvents is how many Warning events of its objects the agent
	// has seen (GET .../events lists the recent ones).
	WarningEvents int64                `json:"warningEvents"`
	Drifted       []DriftedJSON        `json:"drifted,omitempty"`
	Conditions    []ConditionJSON      `json:"conditions,omitempty"`
	Namespaces    []NamespaceCountJSON `json:"namespaces,omitempty"`
	// StateVersion is a string: it is a uint64 and JavaScript's numbers
	// are not.
	StateVersion string    `json:"stateVersion"`
	LastSync     time.Time `json:"lastSync,omitzero"`
	Updated      time.Time `json:"updated"`
	Badge        string    `json:"badge"`
	// Page is the GitSync's page on the hub, relative to its root.
	Page string `json:"page"`
}

// DriftedJSON is one drifted object.
type DriftedJSON struct {
	Group     string   `json:"group,omitempty"`
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name"`
	Paths     []string `json:"paths,omitempty"`
	Deleted   bool     `json:"deleted,omitempty"`
}

// ConditionJSON is one status condition.
type ConditionJSON struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// NamespaceCountJSON is how many objects a GitSync manages in a namespace.
type NamespaceCountJSON struct {
	Namespace string `json:"namespace"`
	Objects   int32  `json:"objects"`
}

// CommitJSON is GET /api/v1/commits/{sha}.
type CommitJSON struct {
	SHA          string             `json:"sha"`
	Environments []store.Deployment `json:"environments"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func apiError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request, p Principal) {
	as, err := s.store.Agents(r.Context())
	if err != nil {
		s.internal(w, "list agents", err)
		return
	}
	as, err = s.agentsSeen(r.Context(), p, as)
	if err != nil {
		s.internal(w, "list agents", err)
		return
	}
	out := make([]AgentJSON, 0, len(as))
	for _, a := range as {
		out = append(out, AgentJSON{Name: a.Name, Connected: s.isConnected(a.Name), LastSeen: a.LastSeen,
			Version: a.Version, ClusterUID: a.ClusterUID})
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": out})
}

// gitsyncsSeen lists the GitSyncs (of one agent, or all) that p may see.
func (s *Server) gitsyncsSeen(ctx context.Context, p Principal, agent string) ([]store.GitSync, error) {
	gs, err := s.store.GitSyncs(ctx, agent)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(gs, func(g store.GitSync) bool { return !p.Sees(g.SourceURL) }), nil
}

// agentsSeen keeps the agents p may see: a project sees the agents that
// run one of its GitSyncs, others every agent.
func (s *Server) agentsSeen(ctx context.Context, p Principal, as []store.Agent) ([]store.Agent, error) {
	if p.Kind != KindProject {
		return as, nil
	}
	gs, err := s.gitsyncsSeen(ctx, p, "")
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(as, func(a store.Agent) bool {
		return !slices.ContainsFunc(gs, func(g store.GitSync) bool { return g.Agent == a.Name })
	}), nil
}

func (s *Server) gitsyncJSON(g store.GitSync) GitSyncJSON {
	out := GitSyncJSON{
		Agent: g.Agent, Namespace: g.Namespace, Name: g.Name, SourceURL: v1alpha1.RedactURL(g.SourceURL), Ref: g.Ref, Path: g.Path,
		Revision: g.Revision, AttemptedRevision: g.AttemptedRevision, Commit: store.SHA(g.Revision),
		Phase: g.Phase, Status: badgeState(g, s.isConnected(g.Agent)), Message: v1alpha1.RedactString(g.Message), DriftCount: g.DriftCount,
		StateVersion: strconv.FormatUint(g.StateVersion, 10), LastSync: g.LastSync, Updated: g.Updated,
		Badge: badgePath(g.Agent, g.Namespace, g.Name), Page: gitsyncPath(g.Agent, g.Namespace, g.Name),
		WarningEvents: g.WarningEvents,
	}
	for _, d := range g.Drifted {
		out.Drifted = append(out.Drifted, DriftedJSON{Group: d.Group, Kind: d.Kind, Namespace: d.Namespace,
			Name: d.Name, Paths: d.Paths, Deleted: d.Deleted})
	}
	for _, c := range g.Conditions {
		out.Conditions = append(out.Conditions, ConditionJSON{Type: c.Type, Status: c.Status, Reason: c.Reason,
			Message: v1alpha1.RedactString(c.Message)})
	}
	for _, n := range g.Namespaces {
		out.Namespaces = append(out.Namespaces, NamespaceCountJSON{Namespace: n.Namespace, Objects: n.Objects})
	}
	return out
}

// badgePath is the badge URL of a GitSync, relative to the hub's root.
func badgePath(agent, namespace, name string) string {
	return "/badge/" + url.PathEscape(agent) + "/" + url.PathEscape(namespace) + "/" + url.PathEscape(name) + ".svg"
}

// gitsyncPath is the stable address of a GitSync's page.
func gitsyncPath(agent, namespace, name string) string {
	return "/gitsyncs/" + url.PathEscape(agent) + "/" + url.PathEscape(namespace) + "/" + url.PathEscape(name)
}

func (s *Server) listGitSyncs(w http.ResponseWriter, r *http.Request, p Principal) {
	gs, err := s.gitsyncsSeen(r.Context(), p, r.URL.Query().Get("agent"))
	if err != nil {
		s.internal(w, "list gitsyncs", err)
		return
	}
	out := make([]GitSyncJSON, 0, len(gs))
	for _, g := range gs {
		out = append(out, s.gitsyncJSON(g))
	}
	writeJSON(w, http.StatusOK, map[string]any{"gitsyncs": out})
}

func (s *Server) getCommit(w http.ResponseWriter, r *http.Request, p Principal) {
	sha := strings.ToLower(r.PathValue("sha"))
	ds, err := s.store.Commit(r.Context(), sha)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	ds = slices.DeleteFunc(ds, func(d store.Deployment) bool { return !p.Sees(d.RepoURL) })
	for i := range ds {
		ds[i].RepoURL = v1alpha1.RedactURL(ds[i].RepoURL)
	}
	writeJSON(w, http.StatusOK, CommitJSON{SHA: sha, Environments: ds})
}

// resync serves POST /api/v1/agents/{agent}/gitsyncs/{ns}/{name}/resync:
// with a bearer token that has the resync action and sees the GitSync, it
// sends the agent a "sync now" for it. 403 for a token without the action
// or of another project (nothing is sent), 404 for a GitSync the hub does
// not know, 409 when its agent is not connected, 503 when the message
// cannot be delivered, 202 when it was.
func (s *Server) resync(w http.ResponseWriter, r *http.Request) {
	p, ok := s.apiClient(w, r)
	if !ok {
		s.metrics.syncNow.WithLabelValues("unauthorized").Inc()
		return
	}
	id, code, msg := s.requestResync(r.Context(), p, r.PathValue("agent"), r.PathValue("ns"), r.PathValue("name"), "the hub API")
	if code != http.StatusAccepted {
		apiError(w, code, msg)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"gitsync": id, "status": "sync requested"})
}

// requestResync sends "sync now" for one GitSync on behalf of p, and says
// how it went as an HTTP status and a message without credentials.
func (s *Server) requestResync(ctx context.Context, p Principal, agent, ns, name, via string) (id string, code int, msg string) {
	id = gitsyncID(agent, ns, name)
	if !p.Can(ActionResync) {
		s.metrics.syncNow.WithLabelValues("forbidden").Inc()
		return id, http.StatusForbidden, "this token lacks the resync action"
	}
	g, err := s.store.GitSync(ctx, agent, ns, name)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			s.metrics.syncNow.WithLabelValues("unknown").Inc()
			return id, http.StatusNotFound, "gitsync " + id + " is not known to the hub"
		}
		s.log.Error("resync "+id, "error", err)
		return id, http.StatusInternalServerError, "internal error"
	}
	if !p.Sees(g.SourceURL) {
		s.metrics.syncNow.WithLabelValues("forbidden").Inc()
		s.log.Info("resync refused: not the project's gitsync", "gitsync", id, "project", p.Name)
		return id, http.StatusForbidden, "gitsync " + id + " does not belong to project " + p.Name
	}
	if !s.isConnected(agent) {
		s.metrics.syncNow.WithLabelValues("offline").Inc()
		return id, http.StatusConflict, "agent " + agent + " is not connected"
	}
	m := &channelpb.SyncNow{Namespace: ns, Name: name, Reason: "resync requested through " + via + " by " + string(p.Kind) + " " + p.Name}
	if err := s.syncNow(agent, m); err != nil {
		s.metrics.syncNow.WithLabelValues("offline").Inc()
		s.log.Info("resync not delivered", "gitsync", id, "error", err)
		return id, http.StatusServiceUnavailable, "agent " + agent + " could not be reached: " + err.Error()
	}
	s.metrics.syncNow.WithLabelValues("sent").Inc()
	s.log.Info("resync sent", "gitsync", id, "principal", p.Name, "kind", p.Kind)
	return id, http.StatusAccepted, ""
}

func (s *Server) internal(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, "error", err)
	apiError(w, http.StatusInternalServerError, "internal error")
}
