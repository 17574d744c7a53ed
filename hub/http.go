package hub

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tether.dev/tether/channel/channelpb"
)

// Handler serves everything the hub offers over HTTP: the page at /, the
// badges, the JSON API, the webhooks, /healthz and /metrics. The channel
// server mounts it as the fallback of its single-port handler.
//
// Who may call what (see auth.go):
//
//	anyone                 badges, /healthz, /login, /logout
//	webhook secret         /hooks/*
//	token/session, read    the page, GitSync pages, GET /api/v1/*, /metrics (anyone with PublicRead);
//	                       a project token sees only its own GitSyncs, and no /metrics
//	bearer token, resync   POST /api/v1/.../resync (the page's button: a session with resync)
//	token with "proxy"     /k8s-proxy/{agent}/... (then the agent decides)
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.readers(true, s.servePage))
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) { s.serveLogin(w, r, http.StatusOK, "") })
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("GET /badge/{agent}/{namespace}/{file}", s.serveGitSyncBadge)
	mux.HandleFunc("GET /badge/commit/{file}", s.serveCommitBadge)
	mux.HandleFunc("GET /api/v1/agents", s.readers(false, s.listAgents))
	mux.HandleFunc("GET /api/v1/gitsyncs", s.readers(false, s.listGitSyncs))
	mux.HandleFunc("GET /api/v1/commits/{sha}", s.readers(false, s.getCommit))
	mux.HandleFunc("GET /api/v1/agents/{agent}/gitsyncs/{ns}/{name}/events", s.readers(false, s.gitsyncEvents))
	mux.HandleFunc("POST /api/v1/agents/{agent}/gitsyncs/{ns}/{name}/resync", s.resync)
	mux.HandleFunc("GET /gitsyncs/{agent}/{ns}/{name}", s.readers(true, s.serveGitSync))
	mux.HandleFunc("POST /gitsyncs/{agent}/{ns}/{name}/resync", s.pageResync)
	mux.Handle("POST /hooks/gitlab", s.hooks.GitLab())
	mux.Handle("POST /hooks/github", s.hooks.GitHub())
	mux.HandleFunc(channelpb.ProxyPrefix+"{agent}/{path...}", s.routeProxy)
	mux.HandleFunc("GET /healthz", s.healthz)
	metrics := promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{})
	mux.HandleFunc("GET /metrics", s.readers(false, func(w http.ResponseWriter, r *http.Request, p Principal) {
		// Counts across every project: not a project's to read.
		if p.Kind == KindProject {
			forbidden(w, "a project token may not read the hub's metrics")
			return
		}
		metrics.ServeHTTP(w, r)
	}))
	return mux
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if _, err := s.store.SchemaVersion(r.Context()); err != nil {
		s.log.Error("healthz", "error", err)
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}
