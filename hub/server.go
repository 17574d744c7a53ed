// Package hub is the hub service: it stores what agents report, shows it to
// people (badges, a JSON API, a web page, commit statuses on the Git host)
// and turns Git push webhooks and API calls into "sync now" for agents.
//
// The channel server (package channel/server) owns the agents' streams; it
// calls the hub through the Authenticator and Sink methods of *Server, and
// the hub sends "sync now" back through the Dispatcher it is given. The hub
// never talks to a cluster: /k8s-proxy/{agent}/... hands a request to the
// agent's own stream (Tunnels), names the caller, and the agent decides
// what that caller may do. The hub holds no cluster credentials.
//
// Everything the hub serves (badges, API, pages with their Warning
// events, the page's sessions) is read from the store, not from the
// process: hubs sharing one PostgreSQL (replicas.go) serve the same bytes,
// and a restart forgets nothing of it.
//
// Badges and /healthz are for anyone; everything else a token opens (see
// Handler). The hub stores and shows no credentials: URL userinfo is
// masked in every report before it is stored, whatever the agent sent.
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/status"
	"tether.dev/tether/hub/store"
	"tether.dev/tether/hub/webhook"
)

// Dispatcher sends "sync now" to an agent over its channel; the channel
// server implements it. SyncNow fails when the agent is not connected.
type Dispatcher interface {
	SyncNow(agent string, msg *channelpb.SyncNow) error
}

// Options configure a hub Server.
type Options struct {
	// DB is the hub's database: the path of a SQLite file (created when
	// missing), or a postgres:// URL for several hubs on one database.
	DB string
	// Retention is how long history is kept: revisions no GitSync is on
	// any more, commit statuses of such commits, deleted GitSyncs' last
	// states, Warning events not sent again within it, commit statuses
	// queued and never posted. The same pass deletes expired sessions (as
	// every login does). The leader deletes what is older every hour; 0
	// keeps all.
	Retention time.Duration
	// LeaseTTL is how long the leader's lease lasts unrenewed (default
	// 30 s): how long leader-only work pauses when the leader dies.
	LeaseTTL time.Duration
	// HubID names this hub in the lease; default host, pid and a random
	// suffix.
	HubID string
	// WebhookSecret is checked by /hooks/*; empty turns webhooks off.
	WebhookSecret []byte
	// ExternalURL is the hub's address as people reach it
	// (https://hub.example.com); commit statuses link to its page.
	ExternalURL string
	// GitHosts are the Git hosts that receive commit statuses.
	GitHosts []status.Host
	// StatusClient and StatusBackoff tune the commit-status poster
	// (defaults: 30 s timeout, 1 s first retry); StatusPoll is how often
	// the leader reads the outbox when nothing woke it (default 2 s).
	StatusClient  *http.Client
	StatusBackoff time.Duration
	StatusPoll    time.Duration
	// PageRefresh is how often the web page reloads itself (default 10 s).
	PageRefresh time.Duration
	// PublicRead lets anyone read the page, GET /api/v1/* and /metrics,
	// which name repositories, paths, commits, errors, objects and
	// clusters. Without it they need an API token (or a session of the
	// page's login form). Badges and /healthz are public either way.
	PublicRead bool
	// Principals turns bearer tokens and sessions into principals.
	// Defaults to the store's tokens: API tokens as operators, project
	// and user tokens with their actions. The page's login needs
	// SessionPrincipals (the store's tokens are); with others only
	// bearer tokens work.
	Principals Principals
	// ProxyRecheck is how often an open /k8s-proxy/ request's token is
	// checked again (default 10 s).
	ProxyRecheck time.Duration
	// WebhookMaxBody bounds a webhook payload (default
	// webhook.DefaultMaxBody, 1 MiB).
	WebhookMaxBody int64
	Log            *slog.Logger
}

// Server is a running hub. Its methods Authenticate, Connected,
// Disconnected and Report are what the channel server calls.
type Server struct {
	opt     Options
	log     *slog.Logger
	store   *store.Store
	poster  *status.Poster
	leader  *leader
	metrics *metrics
	hooks   *webhook.Receiver

	mu         sync.Mutex
	dispatcher Dispatcher
	tunnels    Tunnels
	principals Principals
	streams    map[string]int // open channel streams per agent
	replicas   *replicas      // nil on SQLite; see replicas.go
}

// New opens the store (running its migrations), takes part in the
// leader's election and starts the commit-status poster, which posts
// while this hub leads. Close releases them.
func New(ctx context.Context, opt Options) (*Server, error) {
	if opt.DB == "" {
		return nil, errors.New("hub: a database path is required")
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.PageRefresh <= 0 {
		opt.PageRefresh = 10 * time.Second
	}
	opt.ExternalURL = strings.TrimSuffix(opt.ExternalURL, "/")
	st, err := store.Open(ctx, opt.DB)
	if err != nil {
		return nil, err
	}
	// No stream can be open before the hub starts.
	if err := disconnectAtStart(ctx, st); err != nil {
		st.Close()
		return nil, fmt.Errorf("hub database %s: %w", store.Redact(opt.DB), err)
	}
	if opt.ProxyRecheck <= 0 {
		opt.ProxyRecheck = defaultProxyRecheck
	}
	s := &Server{opt: opt, log: opt.Log, store: st, metrics: newMetrics(), streams: map[string]int{}}
	s.principals = opt.Principals
	if s.principals == nil {
		s.principals = storeTokens{store: st}
	}
	id := opt.HubID
	if id == "" {
		id = hubID()
	}
	leading := new(atomic.Bool)
	s.poster = status.NewPoster(opt.GitHosts, st, status.Options{
		Client: opt.StatusClient, Log: opt.Log, Backoff: opt.StatusBackoff, Poll: opt.StatusPoll,
		Holder: id, Leading: leading.Load, Result: s.metrics.statusResult,
	})
	s.startLeader(id, leading)
	s.hooks = &webhook.Receiver{
		Secret: opt.WebhookSecret, Finder: st, Dispatch: dispatchFunc(s.syncNow), Log: opt.Log, MaxBody: opt.WebhookMaxBody,
		Result: func(provider, result string) { s.metrics.webhooks.WithLabelValues(provider, result).Inc() },
	}
	return s, nil
}

// Close stops the poster, gives up the leader's lease and closes the
// store.
func (s *Server) Close() error {
	s.stopReplicas() // first: its listener wakes the poster
	s.poster.Close()
	s.stopLeader()
	return s.store.Close()
}

// SetDispatcher gives the hub the way to send "sync now" to agents. Until it
// is called, webhooks and the resync API find every agent unreachable.
func (s *Server) SetDispatcher(d Dispatcher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dispatcher = d
}

// errNoDispatcher is returned while no channel server is wired in.
var errNoDispatcher = errors.New("hub: no agent channel")

func (s *Server) syncNow(agent string, msg *channelpb.SyncNow) error {
	s.mu.Lock()
	d := s.dispatcher
	s.mu.Unlock()
	if d == nil {
		return errNoDispatcher
	}
	if r := s.replicaSet(); r != nil {
		return s.syncNowVia(r, d, agent, msg)
	}
	return d.SyncNow(agent, msg)
}

type dispatchFunc func(agent string, msg *channelpb.SyncNow) error

func (f dispatchFunc) SyncNow(agent string, msg *channelpb.SyncNow) error { return f(agent, msg) }

// Store is the hub's database, for tools such as `tether hub token`.
func (s *Server) Store() *store.Store { return s.store }

// Registry is the hub's Prometheus registry, served at /metrics; the
// channel server may register its own collectors in it.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.registry }
