package sync

import (
	"fmt"
	"log/slog"
	"net/http"
	gosync "sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
	"k8s.io/client-go/util/flowcontrol"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/apply"
	"tether.dev/tether/drift"
	"tether.dev/tether/render"
	"tether.dev/tether/source"
)

// Options configures New.
type Options struct {
	// CacheDir holds Git checkouts.
	CacheDir string
	// ResolveTTL is how long one listing of a ref serves every GitSync
	// that follows it.
	ResolveTTL time.Duration
	// Concurrency is how many GitSyncs reconcile at once (the
	// controller's workers); it also bounds each apply's parallel requests.
	Concurrency int
	// Reporter, when set, receives every status change.
	Reporter Reporter
	// Logger is for the parts that log through slog.
	Logger *slog.Logger
	// AgentNamespace is the platform team's namespace, the only one whose
	// GitSyncs may apply with the agent's own rights.
	AgentNamespace string
	// DefaultServiceAccount is impersonated by GitSyncs outside
	// AgentNamespace that name no spec.serviceAccountName; without it they
	// are refused.
	DefaultServiceAccount string
	// NoCrossNamespaceRefs refuses dependsOn entries in other namespaces.
	NoCrossNamespaceRefs bool
}

// New builds the agent's reconciler from the real parts — the Git fetcher,
// the kustomize renderer, the server-side applier and the drift tracker —
// and registers it and the tracker with mgr. cfg is the agent's rest
// config, rate limits already set.
func New(mgr ctrl.Manager, cfg *rest.Config, o Options) (*Reconciler, error) {
	// Apply and drift checks read objects straight from the API server: a
	// cached client would start an informer for every kind a repository
	// holds, where the drift tracker keeps only metadata.
	//
	// One rate limiter and one connection pool serve the agent's client,
	// the drift tracker and every impersonating client: --kube-api-qps
	// bounds the agent as a whole, and a thousand tenants' GitSyncs do not
	// open a thousand connection pools.
	cfg = rest.CopyConfig(cfg)
	if cfg.RateLimiter == nil && cfg.QPS > 0 {
		cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	direct, err := client.New(cfg, client.Options{HTTPClient: hc, Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	// Discovery lets prune tell whether a Namespace holds objects it did
	// not apply; kinds are public, so the agent's own client serves every
	// applier.
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	cached := memory.NewMemCacheClient(disco)
	// One fetcher and one render cache for every GitSync: a repository is
	// listed once per TTL and a folder rendered once per tree, however many
	// GitSyncs use them.
	src := source.NewFetcher(o.CacheDir, source.Options{ResolveTTL: o.ResolveTTL, Logger: o.Logger})
	r := &Reconciler{
		Client:      mgr.GetClient(),
		APIReader:   mgr.GetAPIReader(),
		Source:      src,
		Renderer:    render.NewCache(src, render.CacheOptions{}),
		Applier:     apply.NewManager(direct, apply.ManagerOptions{Concurrency: o.Concurrency, Discovery: cached}),
		Recorder:    mgr.GetEventRecorder("tether"),
		Reporter:    o.Reporter,
		Concurrency: o.Concurrency,

		AgentNamespace:        o.AgentNamespace,
		DefaultServiceAccount: o.DefaultServiceAccount,
		NoCrossNamespaceRefs:  o.NoCrossNamespaceRefs,
	}
	r.ApplierFor = impersonating(mgr, cfg, hc, apply.ManagerOptions{Concurrency: o.Concurrency, Discovery: cached})
	tracker, err := drift.NewTracker(cfg, mgr.GetRESTMapper(), drift.Options{
		FieldManager: apply.DefaultFieldManager,
		Logger:       o.Logger,
		// A drift notification only enqueues the GitSync: its reconcile
		// runs the drift stage; a sync running now is not cancelled.
		OnChange: func(owner drift.Owner) {
			r.enqueue(types.NamespacedName{Namespace: owner.Namespace, Name: owner.Name})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("drift tracker: %w", err)
	}
	r.Drift = tracker
	r.ownerOf = tracker.OwnerOf
	if err := mgr.Add(tracker); err != nil {
		return nil, err
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	return r, nil
}

// impersonating returns a function that gives, once per service account,
// an applier whose every request impersonates that account, so that a
// tenant's GitSync can apply and prune only what its RBAC allows. Kinds
// are still resolved with the agent's own discovery.
func impersonating(mgr ctrl.Manager, cfg *rest.Config, hc *http.Client, opts apply.ManagerOptions) func(namespace, sa string) (Applier, error) {
	var (
		mu       gosync.Mutex
		appliers = map[string]Applier{}
	)
	return func(namespace, sa string) (Applier, error) {
		user := "system:serviceaccount:" + namespace + ":" + sa
		mu.Lock()
		defer mu.Unlock()
		if a, ok := appliers[user]; ok {
			return a, nil
		}
		// The agent's connections, with the impersonation headers added
		// to every request.
		ihc := &http.Client{
			Transport: transport.NewImpersonatingRoundTripper(transport.ImpersonationConfig{UserName: user}, hc.Transport),
			Timeout:   hc.Timeout,
		}
		c, err := client.New(cfg, client.Options{HTTPClient: ihc, Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
		if err != nil {
			return nil, fmt.Errorf("client impersonating %s: %w", user, err)
		}
		a := apply.NewManager(c, opts)
		appliers[user] = a
		return a, nil
	}
}

// OwnerOf names the GitSync whose last apply included the object of this
// kind, namespace and name, from the drift tracker's records: no API
// request. False for an agent without a tracker.
func (r *Reconciler) OwnerOf(kind, namespace, name string) (gitsyncNamespace, gitsyncName string, ok bool) {
	if r.ownerOf == nil {
		return "", "", false
	}
	o, ok := r.ownerOf(kind, namespace, name)
	return o.Namespace, o.Name, ok
}
