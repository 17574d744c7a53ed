package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/agent"
	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/events"
	"tether.dev/tether/channel/tunnel"
	"tether.dev/tether/drift"
	tsync "tether.dev/tether/sync"
)

type agentOptions struct {
	kubeconfig  string
	namespace   string
	cacheDir    string
	concurrent  int
	leaderElect bool
	healthAddr  string
	metricsAddr string
	sourceTTL   time.Duration
	logLevel    string
	logFormat   string
	qps         float32
	burst       int
	hubURL      string
	agentName   string
	tokenFile   string
	caFile      string
	defaultSA   string
	noCrossNS   bool
}

func (o *agentOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then in-cluster)")
	f.StringVar(&o.namespace, "namespace", "tether-system", "the agent's own namespace: its leader-election lease, and the only namespace whose GitSyncs may apply with the agent's rights (the platform team's)")
	f.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "where Git checkouts are cached")
	f.IntVar(&o.concurrent, "concurrent", 4, "how many GitSyncs may reconcile (sync, correct drift) at once: the controller's workers")
	f.BoolVar(&o.leaderElect, "leader-elect", true, "elect a leader so that only one agent replica applies")
	f.StringVar(&o.healthAddr, "health-addr", "", "address of /healthz and /readyz, e.g. :9440 (empty: off)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "address of Prometheus /metrics, e.g. :8080 (empty: off)")
	f.DurationVar(&o.sourceTTL, "source-ttl", 10*time.Second, "how long one listing of a Git ref serves every GitSync that follows it")
	// Sized by `make bench` (docs/performance.md): a first sync of n new
	// objects makes about n requests and a no-change sync none, so the burst
	// covers a first sync of 1,000 objects at once; the API server's own
	// priority and fairness (APF) protects it from any one client beyond
	// that, as it does from kubectl, which has no client-side limit.
	f.Float32Var(&o.qps, "kube-api-qps", 500, "requests per second to the API server, sustained (a first sync of n objects makes about n; a sync with nothing changed none)")
	f.IntVar(&o.burst, "kube-api-burst", 1000, "requests to the API server allowed in a burst")
	f.StringVar(&o.hubURL, "hub-url", "", "the hub to report to (https://, wss://; http:// and ws:// without TLS); empty: run alone")
	f.StringVar(&o.agentName, "agent-name", "", "this agent's name at the hub (one per cluster)")
	f.StringVar(&o.tokenFile, "token-file", "", "file with the agent's hub token (`tether hub token create`), re-read on every connection")
	f.StringVar(&o.caFile, "ca-file", "", "CA certificate (PEM) of the hub, when not signed by a public CA")
	f.StringVar(&o.defaultSA, "default-service-account", "", "service account (of each GitSync's namespace) to impersonate when a GitSync outside --namespace names none; without it such GitSyncs are refused (ServiceAccountRequired), so tenants never get the agent's own rights")
	f.BoolVar(&o.noCrossNS, "no-cross-namespace-refs", false, "refuse GitSync references (dependsOn) to other namespaces")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
}

func defaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "tether", "git")
}

func newAgentCmd() *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent: sync every GitSync in the cluster from Git",
		Long: `The agent watches GitSync objects in every namespace and keeps the cluster
in sync with them. Outside a cluster it needs only a kubeconfig:

  KUBECONFIG=~/.kube/config tether agent`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := setupLogging(cmd.ErrOrStderr(), o.logLevel, o.logFormat)
			if err != nil {
				return err
			}
			cfg, err := restConfig(o.kubeconfig)
			if err != nil {
				return err
			}
			return runAgent(cmd.Context(), cfg, o, log)
		},
	}
	o.bind(cmd)
	return cmd
}

// restConfig loads --kubeconfig, else $KUBECONFIG, else the in-cluster
// config, else ~/.kube/config.
func restConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		if inCluster, ierr := rest.InClusterConfig(); ierr == nil {
			return inCluster, nil
		}
		return nil, fmt.Errorf("no cluster to talk to: %w", err)
	}
	return cfg, nil
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err) // only on a programming error in the scheme builders
		}
	}
	return s
}

// runAgent runs the agent until ctx ends.
func runAgent(ctx context.Context, cfg *rest.Config, o *agentOptions, log logr.Logger) error {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = o.qps, o.burst
	scheme := newScheme()
	if err := ensureNamespace(ctx, cfg, scheme, o.namespace); err != nil {
		return err
	}
	metricsAddr := o.metricsAddr
	if metricsAddr == "" {
		metricsAddr = "0"
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Logger:                        log,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "tether-agent",
		LeaderElectionNamespace:       o.namespace,
		LeaderElectionReleaseOnCancel: true,
		HealthProbeBindAddress:        o.healthAddr,
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
	})
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	if o.healthAddr != "" {
		if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
			return err
		}
	}
	var (
		rec      *tsync.Reconciler
		reporter tsync.Reporter
	)
	if o.hubURL != "" {
		if o.agentName == "" || o.tokenFile == "" {
			return errors.New("--hub-url needs --agent-name and --token-file")
		}
		// The hub's kubectl tunnel: requests go to the API server as the
		// identity the ConfigMap tether-access grants, never as the agent.
		tun, err := tunnel.NewAgent(tunnel.AgentOptions{Config: cfg, Namespace: o.namespace, Logger: logrSlog(log),
			// The GitSync page's live objects, from the drift watch cache.
			Objects: func(ns, name string) ([]tunnel.Tracked, bool) {
				if rec == nil {
					return nil, false
				}
				tr, ok := rec.Drift.(*drift.Tracker)
				if !ok {
					return nil, false
				}
				return trackedObjects(tr, drift.Owner{Namespace: ns, Name: name})
			},
		})
		if err != nil {
			return fmt.Errorf("--hub-url: %w", err)
		}
		if err := mgr.Add(manager.RunnableFunc(tun.Run)); err != nil {
			return err
		}
		ch, err := agent.New(agent.Options{
			HubURL: o.hubURL, AgentName: o.agentName, TokenFile: o.tokenFile, CAFile: o.caFile,
			Version: version, ClusterUID: clusterUID(ctx, cfg, scheme), Logger: logrSlog(log),
			OnSyncNow: func(m *channelpb.SyncNow) { go syncNow(ctx, rec, m, log) },
			Tunnel:    tun,
		})
		if err != nil {
			return fmt.Errorf("--hub-url: %w", err)
		}
		reporter = tsync.ReportTo(ch) // sync builds each report; the channel sends it
		// Only the leader reports: a second replica would replace its
		// stream at the hub.
		if err := mgr.Add(manager.RunnableFunc(ch.Run)); err != nil {
			return err
		}
		// Warning events of the objects GitSyncs applied (and of the Pods
		// and ReplicaSets those own) go to the hub, rate limited.
		kube, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return fmt.Errorf("start agent: %w", err)
		}
		col, err := events.New(events.Options{
			Client: kube, Sender: ch, Log: logrSlog(log),
			Owners: events.Controllers(kube, events.OwnersFunc(func(kind, ns, name string) (string, string, bool) {
				if rec == nil {
					return "", "", false
				}
				return rec.OwnerOf(kind, ns, name)
			})),
		})
		if err != nil {
			return fmt.Errorf("--hub-url: %w", err)
		}
		ch.CountWarnings(col)
		if err := mgr.Add(manager.RunnableFunc(col.Run)); err != nil {
			return err
		}
	}
	rec, err = tsync.New(mgr, cfg, tsync.Options{
		CacheDir:    o.cacheDir,
		ResolveTTL:  o.sourceTTL,
		Concurrency: o.concurrent,
		Reporter:    reporter,
		Logger:      logrSlog(log),

		AgentNamespace:        o.namespace,
		DefaultServiceAccount: o.defaultSA,
		NoCrossNamespaceRefs:  o.noCrossNS,
	})
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	log.Info("agent starting", "version", version, "leaseNamespace", o.namespace, "cacheDir", o.cacheDir)
	return mgr.Start(ctx)
}

// trackedObjects converts the drift watch cache's view of owner for the
// tunnel, which does not import drift.
func trackedObjects(tr *drift.Tracker, owner drift.Owner) ([]tunnel.Tracked, bool) {
	objs, ok := tr.Objects(owner)
	out := make([]tunnel.Tracked, len(objs))
	for i, o := range objs {
		out[i] = tunnel.Tracked{Group: o.Group, Version: o.Version, Kind: o.Kind, Resource: o.Resource,
			Namespace: o.Namespace, Name: o.Name, Drift: string(o.State), Paths: o.Paths}
	}
	return out, ok
}

// ensureNamespace creates the lease namespace when it is missing, so that
// `tether agent` outside a cluster needs no other set-up.
func ensureNamespace(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, name string) error {
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("connect to the cluster: %w", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	err = c.Create(ctx, ns)
	switch {
	case err == nil, apierrors.IsAlreadyExists(err), apierrors.IsForbidden(err):
		return nil
	default:
		return fmt.Errorf("namespace %s for the agent's lease: %w", name, err)
	}
}

// syncNow carries out a hub's "sync now": for one GitSync it forces a full
// sync (as the resync annotation does); for a repository, after a push, it
// makes the GitSyncs that follow it poll at once.
func syncNow(ctx context.Context, rec *tsync.Reconciler, m *channelpb.SyncNow, log logr.Logger) {
	switch {
	case m.GetNamespace() != "" && m.GetName() != "":
		key := types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()}
		if err := rec.Resync(ctx, key, ""); err != nil {
			log.Error(err, "sync now from the hub", "gitsync", key.String())
			return
		}
		log.Info("resync asked by the hub", "gitsync", key.String(), "reason", m.GetReason())
	case m.GetRepoUrl() != "":
		n, err := rec.SyncRepo(ctx, m.GetRepoUrl(), m.GetBranchOrTag())
		if err != nil {
			log.Error(err, "sync now from the hub", "repo", m.GetRepoUrl())
			return
		}
		log.Info("sync now from the hub", "repo", m.GetRepoUrl(), "ref", m.GetBranchOrTag(), "gitsyncs", n, "reason", m.GetReason())
	}
}

// clusterUID identifies the cluster: the UID of its kube-system namespace.
func clusterUID(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme) string {
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return ""
	}
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, types.NamespacedName{Name: "kube-system"}, ns); err != nil {
		return ""
	}
	return string(ns.UID)
}
