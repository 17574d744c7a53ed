package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"tether.dev/tether/channel/server"
	"tether.dev/tether/hub"
	"tether.dev/tether/hub/status"
	"tether.dev/tether/hub/store"
	"tether.dev/tether/hub/webhook"
)

// dbEnv, when set, is the default of every --db: a hub's Deployment can
// take a PostgreSQL URL from a Secret without it showing in the process
// list.
const dbEnv = "TETHER_HUB_DB"

const dbHelp = `the hub's database: a SQLite file (created when missing), or a PostgreSQL URL
postgres://USER@HOST:PORT/DB?sslmode=verify-full for several hubs on one database
(default $` + dbEnv + ` when set). Give the password by PGPASSWORD or ~/.pgpass, or the
whole URL by $` + dbEnv + `, so it stays out of the process list.`

// dbFlag binds --db to p, its default $TETHER_HUB_DB or hub.db. Help
// and errors show it without a password.
func dbFlag(f *pflag.FlagSet, p *string) {
	*p = "hub.db"
	if v := os.Getenv(dbEnv); v != "" {
		*p = v
	}
	f.Var((*dbValue)(p), "db", dbHelp)
}

type dbValue string

func (v *dbValue) String() string     { return store.Redact(string(*v)) }
func (v *dbValue) Set(s string) error { *v = dbValue(s); return nil }
func (v *dbValue) Type() string       { return "string" }

type hubOptions struct {
	listen            string
	db                string
	retention         time.Duration
	tlsCert           string
	tlsKey            string
	webhookSecretFile string
	externalURL       string
	gitlabURLs        []string
	gitlabTokenFiles  []string
	githubURLs        []string
	githubTokenFiles  []string
	shutdownTimeout   time.Duration
	publicRead        bool
	webhookMaxBody    int64
	logLevel          string
	logFormat         string
	peerURL           string
	peerCAFile        string
}

func (o *hubOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to serve on: the agent channel, API, page, badges and webhooks share it")
	dbFlag(f, &o.db)
	f.DurationVar(&o.retention, "retention", 0, "delete revisions no GitSync is on any more, their commit statuses, deleted GitSyncs and Warning events after this age, e.g. 720h (0: keep all); one hub (the lease holder) does it")
	f.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key, serve HTTPS")
	f.StringVar(&o.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	f.StringVar(&o.webhookSecretFile, "webhook-secret-file", "", "file holding the secret /hooks/gitlab and /hooks/github check (empty: webhooks off)")
	f.StringVar(&o.externalURL, "external-url", "", "the hub's URL as people reach it; commit statuses link to its page")
	f.StringArrayVar(&o.gitlabURLs, "gitlab-url", nil, "GitLab server that receives commit statuses, e.g. https://gitlab.example.com (repeatable)")
	f.StringArrayVar(&o.gitlabTokenFiles, "gitlab-token-file", nil, "file holding the token (api scope) for the --gitlab-url at the same position")
	f.StringArrayVar(&o.githubURLs, "github-api-url", nil, "GitHub-shaped API that receives commit statuses: https://api.github.com, or a Gitea's https://gitea.example.com/api/v1 (repeatable)")
	f.StringArrayVar(&o.githubTokenFiles, "github-token-file", nil, "file holding the token for the --github-api-url at the same position")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long open requests may finish after a signal")
	f.BoolVar(&o.publicRead, "public-read", false, "let anyone read the page, GET /api/v1/* and /metrics (they name repositories, commits, errors and clusters); without it they need an API token")
	f.Int64Var(&o.webhookMaxBody, "webhook-max-body", webhook.DefaultMaxBody, "largest webhook payload in bytes; a larger push gets 413 and deploys on the next poll")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	f.StringVar(&o.peerURL, "peer-url", "", "with a PostgreSQL --db, several hubs run as replicas of one: this one's URL as the others reach it (http://POD_IP:8080), for kubectl requests that arrive at another replica")
	f.StringVar(&o.peerCAFile, "peer-ca-file", "", "with an https:// --peer-url: the CA (PEM) the replicas' certificates are signed by (default: the system's roots)")
}

func newHubCmd() *cobra.Command {
	o := &hubOptions{}
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Run the hub: agents' channel, status badges, API, page, webhooks, commit statuses",
		Long: `The hub receives agents' sync reports and shows them to people: SVG badges
for merge requests, a JSON API, a web page, and commit statuses on GitLab,
GitHub or Gitea. Git push webhooks and the API send "sync now" to agents.

  tether hub --listen 127.0.0.1:8080 --db ./hub.db --webhook-secret-file ./hook-secret

HTTP endpoints, and who may call them:
  GET  /badge/{agent}/{namespace}/{name}.svg   anyone: one GitSync's badge
  GET  /badge/commit/{sha}.svg[?repo=URL]      anyone: where a commit is deployed
  GET  /healthz                                anyone
  GET  /                                       the page (refreshes itself)
  GET  /gitsyncs/{agent}/{namespace}/{name}    one GitSync: objects, events, revisions
  GET  /api/v1/agents | /api/v1/gitsyncs | /api/v1/commits/{sha}
  GET  /api/v1/agents/{agent}/gitsyncs/{namespace}/{name}/events
  GET  /metrics (not for project tokens)
       need a token with the read action: "Authorization: Bearer <token>",
       or for the pages a session from the form at /login (POST /logout
       ends it); anyone with --public-read. Operators' tokens come from
       'tether hub token create --api --name NAME'; project and user tokens
       from --project NAME / --user NAME --actions read,resync,proxy. A
       project token sees only its project's GitSyncs. Agent tokens don't work.
  POST /api/v1/agents/{agent}/gitsyncs/{namespace}/{name}/resync
       needs "Authorization: Bearer <token>" with the resync action, even
       with --public-read (the GitSync page's button: a session with it)
  ANY  /k8s-proxy/{agent}/...   the agent's Kubernetes API, through its
       channel: needs a token with the proxy action (API tokens have it);
       the agent's ConfigMap tether-access decides what the caller may do
       ('tether hub kubeconfig' writes a kubeconfig for it)
  POST /hooks/gitlab   X-Gitlab-Token must equal the webhook secret
  POST /hooks/github   GitHub and Gitea: X-Hub-Signature-256 HMAC of the body

Commit statuses (state running, success or failed; context
tether/<agent>/<namespace>/<name>) go to the hosts configured in pairs:
  --gitlab-url https://gitlab.example.com --gitlab-token-file F
  --github-api-url https://api.github.com --github-token-file F
  --github-api-url https://gitea.example.com/api/v1 --github-token-file F
A GitSync's source URL selects the host by its host name.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := setupLogging(cmd.ErrOrStderr(), o.logLevel, o.logFormat); err != nil {
				return err
			}
			return runHub(cmd.Context(), o)
		},
	}
	o.bind(cmd)
	cmd.AddCommand(newHubTokenCmd(), newHubKubeconfigCmd(), newHubProjectCmd())
	return cmd
}

// hubConfig turns flags into the hub's options, reading secret files.
func hubConfig(o *hubOptions) (hub.Options, error) {
	opt := hub.Options{DB: o.db, Retention: o.retention, ExternalURL: o.externalURL, PublicRead: o.publicRead,
		WebhookMaxBody: o.webhookMaxBody, Log: slog.Default()}
	if o.retention < 0 {
		return opt, errors.New("--retention must not be negative")
	}
	if o.webhookMaxBody < 0 {
		return opt, errors.New("--webhook-max-body must be positive")
	}
	if o.webhookSecretFile != "" {
		s, err := readSecret(o.webhookSecretFile)
		if err != nil {
			return opt, fmt.Errorf("--webhook-secret-file: %w", err)
		}
		opt.WebhookSecret = []byte(s)
	}
	pairs := []struct {
		flag   string
		urls   []string
		tokens []string
		make   func(url, token string) (status.Host, error)
	}{
		{"gitlab", o.gitlabURLs, o.gitlabTokenFiles, status.NewGitLab},
		{"github", o.githubURLs, o.githubTokenFiles, status.NewGitHub},
	}
	for _, p := range pairs {
		if len(p.urls) != len(p.tokens) {
			return opt, fmt.Errorf("--%s-*: %d URLs but %d token files; give them in pairs", p.flag, len(p.urls), len(p.tokens))
		}
		for i, u := range p.urls {
			tok, err := readSecret(p.tokens[i])
			if err != nil {
				return opt, fmt.Errorf("--%s-token-file: %w", p.flag, err)
			}
			h, err := p.make(u, tok)
			if err != nil {
				return opt, err
			}
			opt.GitHosts = append(opt.GitHosts, h)
		}
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return opt, errors.New("--tls-cert and --tls-key go together")
	}
	return opt, nil
}

func runHub(ctx context.Context, o *hubOptions) error {
	if _, err := hubConfig(o); err != nil {
		return err
	}
	l, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", o.listen, err)
	}
	return serveHub(ctx, o, l)
}

// serveHub runs the hub on l until ctx ends.
func serveHub(ctx context.Context, o *hubOptions, l net.Listener) error {
	opt, err := hubConfig(o)
	if err != nil {
		return err
	}
	ro := hub.ReplicaOptions{PeerURL: o.peerURL}
	if o.peerCAFile != "" {
		if ro.PeerCA, err = readCAFile(o.peerCAFile); err != nil {
			return fmt.Errorf("--peer-ca-file: %w", err)
		}
	}
	srv, err := hub.New(ctx, opt)
	if err != nil {
		return err
	}
	defer srv.Close()

	// One port for everything: the agent channel (gRPC over HTTP/2, with
	// or without TLS, and its WebSocket transport) and, as the fallback,
	// the hub's page, badges, API and webhooks.
	ch := server.NewServer(server.ServerOptions{
		Authenticator: srv,
		Sink:          srv.ChannelSink(),
		Fallback:      srv.Handler(),
		Logger:        slog.Default(),
		HubVersion:    version,
	})
	srv.SetDispatcher(ch)
	srv.SetTunnels(ch)
	if err := srv.StartReplicas(ctx, ro); err != nil {
		return err
	}
	httpSrv := ch.HTTPServer(nil)
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		httpSrv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	scheme := "http"
	if httpSrv.TLSConfig != nil {
		scheme = "https"
	}
	slog.Info("hub serving", "address", scheme+"://"+l.Addr().String(), "db", store.Redact(o.db),
		"webhooks", len(opt.WebhookSecret) > 0, "gitHosts", len(opt.GitHosts), "publicRead", opt.PublicRead)
	errc := make(chan error, 1)
	go func() {
		if httpSrv.TLSConfig != nil {
			errc <- httpSrv.ServeTLS(l, "", "") // ServeTLS offers h2 by ALPN
			return
		}
		errc <- httpSrv.Serve(l)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("hub: %w", err)
	case <-ctx.Done():
	}
	slog.Info("hub shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	ch.Stop(sctx)
	if err := httpSrv.Shutdown(sctx); err != nil {
		return fmt.Errorf("hub shutdown: %w", err)
	}
	return nil
}

// readSecret reads a secret or token file, without surrounding whitespace.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

type tokenOptions struct {
	db      string
	agent   string
	api     bool
	name    string
	project string
	user    string
	actions string
}

func (o *tokenOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	dbFlag(f, &o.db)
	f.StringVar(&o.agent, "agent", "", "the agent the token is for")
	f.BoolVar(&o.api, "api", false, "an API token (to read the page, the API and /metrics, and to resync) instead of an agent token")
	f.StringVar(&o.name, "name", "", "with --api: who holds the token, e.g. ci")
	f.StringVar(&o.project, "project", "", "a token of this hub project (tether hub project create): it sees only the project's GitSyncs")
	f.StringVar(&o.user, "user", "", "a token of this user")
	f.StringVar(&o.actions, "actions", "", "with --project or --user: what the token may do, comma-separated: read, resync, proxy")
}

var subjectName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// subject returns the token's kind and subject from the flags.
func (o *tokenOptions) subject() (string, string, error) {
	set := 0
	for _, v := range []bool{o.agent != "", o.api || o.name != "", o.project != "", o.user != ""} {
		if v {
			set++
		}
	}
	if set > 1 {
		return "", "", errors.New("give one of --agent, --api --name, --project or --user")
	}
	if o.project != "" || o.user != "" {
		kind, name := store.KindProject, o.project
		if o.user != "" {
			kind, name = store.KindUser, o.user
		}
		if !subjectName.MatchString(name) {
			return "", "", fmt.Errorf("%s %q: letters, digits, '.', '_' and '-', at most 63", kind, name)
		}
		return kind, name, nil
	}
	if o.actions != "" {
		return "", "", errors.New("--actions goes with --project or --user (agent and --api tokens have fixed rights)")
	}
	kind, name := store.KindAgent, o.agent
	if o.api {
		kind, name = store.KindAPI, o.name
		if o.agent != "" {
			return "", "", errors.New("--api tokens take --name, not --agent")
		}
	} else if o.name != "" {
		return "", "", errors.New("--name goes with --api; agent tokens take --agent")
	}
	if name == "" {
		return "", "", errors.New("--agent NAME, --api --name NAME, --project NAME or --user NAME is required")
	}
	if !subjectName.MatchString(name) {
		return "", "", fmt.Errorf("name %q: letters, digits, '.', '_' and '-', at most 63", name)
	}
	return kind, name, nil
}

func newHubTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create or revoke agent, API, project and user tokens",
		Long: `Agent tokens let one agent open the channel (tether agent --token-file).
API tokens (--api --name) are operators': they read the page (sign in at
/login), the JSON API and /metrics of every project, resync, and use the
Kubernetes API proxy. Project and user tokens carry only the actions given
with --actions (read, resync, proxy); a project token sees only the GitSyncs
of its project's repositories, and on the proxy each agent's tether-access
ConfigMap decides what the project or user may do. Agent tokens work nowhere
else. The hub stores only a hash of each token: a token is shown once, when
it is created.`,
	}
	create := &tokenOptions{}
	createCmd := &cobra.Command{
		Use:   "create",
		Short: "Create a token and print it (and nothing else) on stdout",
		Example: `  tether hub token create --db ./hub.db --agent prod-eu > prod-eu.token
  tether hub token create --db ./hub.db --api --name ci
  tether hub token create --db ./hub.db --project shop --actions read,resync,proxy
  tether hub token create --db ./hub.db --user alice --actions read,proxy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kind, name, err := create.subject()
			if err != nil {
				return err
			}
			var actions []string
			if kind == store.KindProject || kind == store.KindUser {
				as, err := hub.ParseActions(create.actions)
				if err != nil {
					return fmt.Errorf("--actions: %w", err)
				}
				for _, a := range as {
					actions = append(actions, string(a))
				}
			}
			st, err := store.Open(cmd.Context(), create.db)
			if err != nil {
				return err
			}
			defer st.Close()
			var tok string
			if actions != nil {
				tok, err = st.CreateScopedToken(cmd.Context(), kind, name, actions)
			} else {
				tok, err = st.CreateToken(cmd.Context(), kind, name)
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	create.bind(createCmd)
	revoke := &tokenOptions{}
	revokeCmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke every token of an agent, API client, project or user; refused from the next call on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kind, name, err := revoke.subject()
			if err != nil {
				return err
			}
			st, err := store.Open(cmd.Context(), revoke.db)
			if err != nil {
				return err
			}
			defer st.Close()
			n, err := st.RevokeTokens(cmd.Context(), kind, name)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "revoked %d %s token(s) of %s\n", n, kind, name)
			return nil
		},
	}
	revoke.bind(revokeCmd)
	cmd.AddCommand(createCmd, revokeCmd)
	return cmd
}

// readCAFile reads a PEM file of CA certificates into a pool.
func readCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return pool, nil
}
