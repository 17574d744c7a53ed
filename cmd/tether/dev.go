package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/hub/store"
	"tether.dev/tether/internal/devenv"
	"tether.dev/tether/source"
)

func newDevCmd() *cobra.Command {
	var (
		examples, work string
		interval       time.Duration
	)
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the local demo: a control plane, a Git repository and an agent syncing it",
		Long: `dev starts everything Tether needs on this machine: the embedded
kube-apiserver + etcd (or the cluster of $KUBECONFIG / --kubeconfig), a Git
server on 127.0.0.1 with a demo repository seeded from examples/, GitSyncs
that deploy it, and the agent. Commit to the demo repository and watch the
change reach the cluster. Ctrl-C stops it all.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			logFile := filepath.Join(work, "agent.log")
			if err := os.MkdirAll(work, 0o755); err != nil {
				return err
			}
			lf, err := os.Create(logFile)
			if err != nil {
				return err
			}
			defer lf.Close()
			log, err := setupLogging(lf, o.logLevel, o.logFormat)
			if err != nil {
				return err
			}
			kubeconfig := o.kubeconfig
			if kubeconfig == "" {
				kubeconfig = os.Getenv("KUBECONFIG")
			}
			ctx := cmd.Context()
			scheme := newScheme()
			fmt.Fprintln(out, "Tether local demo: control plane, Git repository, agent.")
			env, err := devenv.Start(ctx, devenv.Options{
				ExamplesDir: examples, WorkDir: work, Kubeconfig: kubeconfig,
				Interval: interval, Scheme: scheme, Out: out,
			})
			if err != nil {
				return err
			}
			defer env.Close()

			hubURL, apiToken, hubErr, err := startDevHub(ctx, env, work, o)
			if err != nil {
				return err
			}
			env.Step("starting the agent (its log: " + logFile + ")")
			agentErr := make(chan error, 1)
			go func() { agentErr <- runAgent(ctx, env.Config, o, log) }()

			env.Step("waiting for the first sync")
			c, err := client.New(env.Config, client.Options{Scheme: scheme})
			if err != nil {
				return err
			}
			synced, err := devenv.WaitReady(ctx, c, out, 2*time.Minute)
			if err != nil {
				fmt.Fprintf(out, "warning: %v (see %s)\n", err, logFile)
			}
			printNextSteps(out, env, interval, hubURL, apiToken, synced)
			select {
			case err := <-agentErr:
				return err
			case err := <-hubErr:
				return err
			case <-ctx.Done():
				fmt.Fprintln(out, "stopping")
				return errors.Join(<-agentErr, <-hubErr)
			}
		},
	}
	o.bind(cmd)
	f := cmd.Flags()
	f.StringVar(&examples, "examples", "examples", "folder copied into the demo repository on the first run")
	f.StringVar(&work, "work-dir", ".tether-dev", "where the demo keeps its repository, kubeconfig and logs")
	f.DurationVar(&interval, "interval", 10*time.Second, "poll interval of the demo GitSyncs")
	_ = f.Set("cache-dir", filepath.Join(".tether-dev", "git-cache"))
	_ = f.Set("source-ttl", "2s")
	return cmd
}

// startDevHub starts the hub in this process on 127.0.0.1 (port 8080 when
// free), gives the demo agent a token for it and points o at it. The hub
// is not public-read, even on loopback (other users of the machine reach
// it too): it returns the file of a fresh API token to sign in with.
func startDevHub(ctx context.Context, env *devenv.Env, work string, o *agentOptions) (string, string, <-chan error, error) {
	l, err := net.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return "", "", nil, err
		}
	}
	hubURL := "http://" + l.Addr().String()
	env.Step("starting the hub on " + hubURL + " (the demo repository's Git hooks call its webhook)")
	db := filepath.Join(work, "hub.db")
	st, err := store.Open(ctx, db)
	if err != nil {
		return "", "", nil, err
	}
	token, err := st.CreateToken(ctx, store.KindAgent, devAgent)
	if err != nil {
		st.Close()
		return "", "", nil, err
	}
	// One demo API token at a time: the last run's stops working.
	if _, err := st.RevokeTokens(ctx, store.KindAPI, devAgent); err != nil && !errors.Is(err, store.ErrNotFound) {
		st.Close()
		return "", "", nil, err
	}
	apiToken, err := st.CreateToken(ctx, store.KindAPI, devAgent)
	st.Close()
	if err != nil {
		return "", "", nil, err
	}
	o.hubURL, o.agentName, o.tokenFile = hubURL, devAgent, filepath.Join(work, "agent.token")
	if err := os.WriteFile(o.tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return "", "", nil, err
	}
	apiTokenFile := filepath.Join(work, "api.token")
	if err := os.WriteFile(apiTokenFile, []byte(apiToken+"\n"), 0o600); err != nil {
		return "", "", nil, err
	}
	// The demo repository's hooks call the hub's webhook with this secret,
	// so a commit deploys at once instead of at the next poll.
	secretFile := filepath.Join(work, "webhook.secret")
	if err := devenv.WriteWebhookSecret(secretFile); err != nil {
		return "", "", nil, err
	}
	if err := env.InstallHooks(hubURL, secretFile); err != nil {
		return "", "", nil, err
	}
	errc := make(chan error, 1)
	go func() {
		errc <- serveHub(ctx, &hubOptions{db: db, externalURL: hubURL, webhookSecretFile: secretFile,
			shutdownTimeout: 5 * time.Second}, l)
	}()
	return hubURL, apiTokenFile, errc, nil
}

// devAgent is the demo agent's name at the hub.
const devAgent = "dev"

func printNextSteps(out io.Writer, env *devenv.Env, interval time.Duration, hubURL, apiTokenFile string, synced []v1alpha1.GitSync) {
	staging := devenv.Demos[0]
	fmt.Fprintf(out, `
Tether is running. Where to look:

  hub page:      %[7]s/login   (sign in with the API token in %[9]s)
  status badge:  %[7]s/badge/%[8]s/%[6]s/%[5]s.svg
`, env.Kubeconfig, staging.Namespace, interval, env.RepoDir, staging.Name, devenv.DemoNamespace, hubURL, devAgent, apiTokenFile)
	for _, gs := range synced {
		if rev, err := source.ParseRevision(gs.Status.LastAppliedRevision); err == nil && gs.Name == staging.Name {
			fmt.Fprintf(out, "  commit badge:  %s/badge/commit/%s.svg   (for a merge request)\n", hubURL, rev.SHA)
		}
	}
	fmt.Fprintf(out, `
The hub page and API need a token (badges don't). To sign in, open
%[1]s/login and paste the output of:

  cat %[2]s

The JSON API takes the same token:

  curl -H "Authorization: Bearer $(cat %[2]s)" %[1]s/api/v1/gitsyncs
`, hubURL, apiTokenFile)
	fmt.Fprintf(out, `
What to do next (in another terminal):

  export KUBECONFIG=%[1]s
  kubectl get gitsyncs -A                      # READY, REVISION, DRIFT, STATUS, AGE
  kubectl get all,configmaps -n %[2]s

Commit to deploy. The repository's post-commit hook calls the hub's
webhook, so the commit is applied within about a second; if the hook
cannot reach the hub, the agent's poll (every %[3]s) picks it up:

  cd %[4]s
  sed -i 's/Hello from staging/Hello again/' podinfo-like/overlays/staging/configmap.yaml
  git commit -am "Change the staging greeting"
  kubectl get configmap podinfo-config -n %[2]s -o jsonpath='{.data.PODINFO_UI_MESSAGE}'

Rollout health: kube-controller-manager runs, so the Deployment gets a
ReplicaSet and Pods and the HorizontalPodAutoscaler scales it:

  kubectl get deployment,replicasets,pods,hpa -n %[2]s

There is no kubelet (nor scheduler) here: the Pods stay Pending and the
Deployment never becomes Available. The demo GitSyncs don't wait for
health, so their Ready=True means "applied". The hub's GitSync page shows
the HPA's warning events (no metrics server). Make one wait, and its page
and badge show Ready=False, HealthCheckFailed ("Available: 0/3") after 30s:

  kubectl patch gitsync/podinfo-production -n %[6]s --type merge -p '{"spec":{"wait":true,"timeout":"30s"}}'

Change something behind Git's back and watch it come back (drift):

  kubectl patch configmap podinfo-config -n %[2]s --type merge -p '{"data":{"PODINFO_UI_MESSAGE":"changed by hand"}}'
  kubectl get configmap podinfo-config -n %[2]s -o jsonpath='{.data.PODINFO_UI_MESSAGE}'
  kubectl get gitsync/%[5]s -n %[6]s -o jsonpath='{.status.drift}'

(Scaling deployment/podinfo is left to its HorizontalPodAutoscaler: Tether
neither reports nor corrects the replicas of an HPA's target.)

Force a resync:

  kubectl annotate gitsync/%[5]s -n %[6]s tether.dev/resync-at="$(date +%%s)" --overwrite

Press Ctrl-C to stop.
`, env.Kubeconfig, staging.Namespace, interval, env.RepoDir, staging.Name, devenv.DemoNamespace)
}
