package hub

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/server"
	"tether.dev/tether/channel/tunnel"
	"tether.dev/tether/hub/store"
)

// Tunnels opens the tunnel to an agent's cluster; the channel server
// implements it.
type Tunnels interface {
	Tunnel(agent string) (*tunnel.Mux, error)
}

// SetTunnels gives the hub the agents' tunnels. Until it is called,
// /k8s-proxy/ finds every agent unreachable.
func (s *Server) SetTunnels(t Tunnels) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tunnels = t
}

// defaultProxyRecheck is how often an open tunnelled request's token is
// checked again, so a revoked token ends a watch.
const defaultProxyRecheck = 10 * time.Second

// proxy serves /k8s-proxy/{agent}/{path...}: any method, the token's
// principal must have the proxy action, and the agent decides the rest.
// The hub adds the caller's name and nothing else: the caller's own
// Authorization and Impersonate-* headers never leave the hub.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request) {
	token := bearer(r)
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tether-hub"`)
		tunnel.WriteStatus(w, http.StatusUnauthorized, "Unauthorized", "a hub token with the proxy action is required")
		return
	}
	p, err := s.principals.Principal(r.Context(), token)
	switch {
	case errors.Is(err, store.ErrInvalidToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="tether-hub"`)
		tunnel.WriteStatus(w, http.StatusUnauthorized, "Unauthorized", "the hub token is invalid or revoked")
		return
	case err != nil:
		s.log.Error("authenticate proxy caller", "error", err)
		tunnel.WriteStatus(w, http.StatusInternalServerError, "InternalError", "the hub could not check the token")
		return
	case !p.Can(ActionProxy):
		tunnel.WriteStatus(w, http.StatusForbidden, "Forbidden", "the hub token lacks the proxy action")
		return
	}
	if tunnel.IsAgentPath(r.PathValue("path")) {
		// The agent's own paths (a GitSync's live objects) are the page's,
		// behind its per-GitSync read check; a proxy token must not reach
		// them for GitSyncs it cannot see.
		tunnel.WriteStatus(w, http.StatusNotFound, "NotFound", "not a Kubernetes API path")
		return
	}
	agent := r.PathValue("agent")
	s.mu.Lock()
	tunnels := s.tunnels
	s.mu.Unlock()
	if tunnels == nil {
		tunnel.WriteStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the hub has no agent channel")
		return
	}
	mux, err := tunnels.Tunnel(agent)
	switch {
	case errors.Is(err, server.ErrNotConnected):
		// No Retry-After: client-go would retry quietly for a minute.
		tunnel.WriteStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "agent "+agent+" is not connected to the hub")
		return
	case errors.Is(err, server.ErrNoTunnel):
		tunnel.WriteStatus(w, http.StatusNotImplemented, "NotImplemented", "agent "+agent+" does not serve the Kubernetes API tunnel (upgrade it)")
		return
	case err != nil:
		tunnel.WriteStatus(w, http.StatusBadGateway, "InternalError", "agent "+agent+": no tunnel")
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go s.recheckProxy(ctx, cancel, token)
	path := "/" + r.PathValue("path")
	s.log.Debug("proxy", "agent", agent, "principal", p.Name, "kind", p.Kind, "method", r.Method, "path", path)
	tunnel.Forward(w, r.WithContext(ctx), mux, path, callerOf(p))
}

// recheckProxy ends the request (cancel) once its token stops being valid
// for the proxy: a revoked token ends an open watch within ProxyRecheck.
func (s *Server) recheckProxy(ctx context.Context, cancel context.CancelFunc, token string) {
	t := time.NewTicker(s.opt.ProxyRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p, err := s.principals.Principal(ctx, token)
		if errors.Is(err, store.ErrInvalidToken) || (err == nil && !p.Can(ActionProxy)) {
			s.log.Info("proxy request ended: its token was revoked", "principal", p.Name)
			cancel()
			return
		}
	}
}

// callerOf is how the hub names a principal to the agent. Operators use
// the proxy as the user of their token's name.
func callerOf(p Principal) *channelpb.TunnelCaller {
	if p.Kind == KindProject {
		return &channelpb.TunnelCaller{Kind: channelpb.CallerKind_CALLER_KIND_PROJECT, Name: p.Name}
	}
	return &channelpb.TunnelCaller{Kind: channelpb.CallerKind_CALLER_KIND_USER, Name: strings.TrimSpace(p.Name)}
}
