// Command bench measures the agent end to end on this machine and prints
// one markdown table (for docs/performance.md), every figure measured in
// the same run against the same API server:
//
//   - a poll that finds nothing new;
//   - one GitSync of a mixed set (ConfigMaps, Deployments, Services over 10
//     namespaces): first sync and forced no-change resync, side by side
//     with the pinned `kubectl apply --server-side` and Flux's
//     ssa.ApplyAllStaged on the same objects (mix.go);
//   - with the largest set watched: out-of-band change → corrected and →
//     detected (drift.go), and the requests the agent makes while a
//     Deployment's status changes ten times a second (flap.go);
//   - commit → webhook → hub → agent → applied at a steady commit rate over
//     many GitSyncs (webhook.go);
//   - many GitSyncs on one repository: create → all Ready, one commit
//     touching all → live everywhere, requests per idle interval, memory
//     (fleet.go);
//   - the cluster through the hub's tunnel: get and a list of 1,000
//     through the tunnel vs direct, hub memory per open tunnelled watch,
//     agent memory with 100 open proxied requests (tunnel.go);
//   - the hub alone, with simulated agents on the real protocol (hub.go):
//     reports/s, webhook → SyncNow and memory on SQLite, PostgreSQL and
//     three replicas, 100,000 agents over three replicas, and a replica
//     SIGKILLed under report load. `-only hub` starts no control plane.
//
// It starts its own control plane, Git server and hub and runs the real
// `tether` binary as separate processes, so it measures whatever engine is
// built, and a fresh agent per part, so that each memory figure is that
// part's alone. The agent runs as a service account of its own, so that
// the API server counts its requests apart (identity.go). Progress goes to
// stderr, the table to stdout. -quick runs small sizes in a few minutes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"tether.dev/tether/internal/testenv"
	"tether.dev/tether/source"
)

type options struct {
	tether        string
	quick         bool
	only          map[string]bool
	runs, polls   int
	sizes, fleets intList
	fleetInterval time.Duration
	flap          time.Duration
	driftRuns     int
	hookSyncs     int
	hookCommits   int
	hookRate      int
	// peers: time kubectl and Flux's ssa path beside tether in mix
	// (off when only tether's own figures are compared, before and after).
	peers     bool
	agentArgs []string
	hub       hubBench
}

var parts = []string{"poll", "mix", "drift", "flap", "webhook", "fleet", "tunnel", "hub"}

func main() {
	o := options{sizes: intList{1000, 5000}, fleets: intList{100, 1000}}
	only := ""
	flag.StringVar(&o.tether, "tether", "bin/tether", "the tether binary to run as agent and hub")
	flag.BoolVar(&o.quick, "quick", false, "small sizes and short waits (a few minutes): -sizes 150,600 -runs 1 -fleets 10,50 -fleet-interval 15s -flap 10s -drift-runs 5 -webhook-gitsyncs 10 -webhook-commits 20 -hub-agents 100 -hub-load 3s -hub-webhooks 100 -hub-fleet 3000 -hub-own-conns 1000 -hub-kill-agents 60 -hub-kill-after 5s, unless given")
	flag.StringVar(&only, "only", "", "comma-separated parts to run, of "+strings.Join(parts, ",")+" (default all; drift and flap need mix)")
	flag.IntVar(&o.runs, "runs", 3, "runs per size of the mixed set (medians are printed)")
	flag.IntVar(&o.polls, "polls", 20, "no-change polls to time")
	flag.Var(&o.sizes, "sizes", "comma-separated object counts of the mixed set; the largest stays synced for drift and flap")
	flag.Var(&o.fleets, "fleets", "comma-separated GitSync counts of the fleet (10 objects each, one repository)")
	flag.DurationVar(&o.fleetInterval, "fleet-interval", time.Minute, "the fleet's GitSync interval: requests are counted over one idle interval")
	flag.DurationVar(&o.flap, "flap", time.Minute, "how long a Deployment's status is changed 10×/s")
	flag.IntVar(&o.driftRuns, "drift-runs", 20, "out-of-band changes timed per drift mode")
	flag.IntVar(&o.hookSyncs, "webhook-gitsyncs", 100, "GitSyncs (one repository each) the webhook commits are spread over")
	flag.IntVar(&o.hookCommits, "webhook-commits", 100, "commits sent through the webhook")
	flag.IntVar(&o.hookRate, "webhook-rate", 100, "webhook commits per minute")
	flag.BoolVar(&o.peers, "peers", true, "time kubectl and Flux's ssa path beside tether in mix (-peers=false: tether only, e.g. to compare two builds)")
	flag.IntVar(&o.hub.agents, "hub-agents", 1000, "hub: simulated agents per setup (SQLite, PostgreSQL, 3 replicas) for reports/s, webhooks and memory")
	flag.DurationVar(&o.hub.load, "hub-load", 10*time.Second, "hub: how long the agents send reports, per setup")
	flag.IntVar(&o.hub.webhooks, "hub-webhooks", 500, "hub: webhooks timed to the SyncNow at the agent, per setup")
	flag.IntVar(&o.hub.webhookRate, "hub-webhook-rate", 50, "hub: webhooks per second")
	flag.IntVar(&o.hub.fleet, "hub-fleet", 100_000, "hub: agents connected over 3 replicas for memory (0: skip)")
	flag.IntVar(&o.hub.perConn, "hub-per-conn", 16, "hub: fleet agents per HTTP/2 connection (the hub allows 16 streams on one)")
	flag.IntVar(&o.hub.ownConns, "hub-own-conns", 15_000, "hub: agents with a TCP connection each on one hub, to price a connection (0: skip; under the fd limit)")
	flag.IntVar(&o.hub.killAgents, "hub-kill-agents", 300, "hub: agents under report load when a replica is SIGKILLed (0: skip)")
	flag.DurationVar(&o.hub.killAfter, "hub-kill-after", 10*time.Second, "hub: report load after the SIGKILL")
	agentArgs := ""
	flag.StringVar(&agentArgs, "agent-args", "", "extra flags for every agent, space-separated (e.g. --concurrent=16)")
	flag.Parse()
	if o.quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"sizes":            func() { o.sizes = intList{150, 600} },
			"runs":             func() { o.runs = 1 },
			"polls":            func() { o.polls = 5 },
			"fleets":           func() { o.fleets = intList{10, 50} },
			"fleet-interval":   func() { o.fleetInterval = 15 * time.Second },
			"flap":             func() { o.flap = 10 * time.Second },
			"drift-runs":       func() { o.driftRuns = 5 },
			"webhook-gitsyncs": func() { o.hookSyncs = 10 },
			"webhook-commits":  func() { o.hookCommits = 20 },
			"hub-agents":       func() { o.hub.agents = 100 },
			"hub-load":         func() { o.hub.load = 3 * time.Second },
			"hub-webhooks":     func() { o.hub.webhooks = 100 },
			"hub-fleet":        func() { o.hub.fleet = 3000 },
			"hub-own-conns":    func() { o.hub.ownConns = 1000 },
			"hub-kill-agents":  func() { o.hub.killAgents = 60 },
			"hub-kill-after":   func() { o.hub.killAfter = 5 * time.Second },
		}
		for name, f := range quick {
			if !set[name] {
				f()
			}
		}
	}
	o.agentArgs = strings.Fields(agentArgs)
	o.only = map[string]bool{}
	for _, p := range strings.Split(only, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !slices.Contains(parts, p) {
			fmt.Fprintf(os.Stderr, "bench: -only: unknown part %q (have %s)\n", p, strings.Join(parts, ","))
			os.Exit(2)
		}
		o.only[p] = true
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (o options) does(part string) bool { return len(o.only) == 0 || o.only[part] }

func run(o options) error {
	ctx := context.Background()
	began := time.Now()
	start := startEnv
	if !o.needsCluster() {
		start = startBareEnv
	}
	e, err := start("tether-bench-", o.tether)
	if err != nil {
		return err
	}
	defer e.close()
	e.agentArgs = o.agentArgs
	var rows []row
	if o.does("poll") {
		step("poll: %d no-change polls", o.polls)
		r, err := e.benchPoll(ctx, o.polls)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	if o.does("mix") || o.does("drift") || o.does("flap") {
		r, err := e.benchMix(ctx, o)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	if o.does("webhook") {
		r, err := e.benchWebhook(ctx, o)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	if o.does("tunnel") {
		r, err := e.benchTunnel(ctx, o)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	if o.does("fleet") {
		r, err := e.benchFleets(ctx, o)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	if o.does("hub") {
		r, err := e.runHubPart(ctx, o.hub)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	step("done in %s", time.Since(began).Round(time.Second))
	what := "kube-apiserver, etcd and kubectl v1.37.2 built from source (`make test-bin`); everything in one run against the same API server"
	if !o.needsCluster() {
		what = hubRunDesc
	}
	fmt.Printf("\n`%s` on %s, %s, %s in all; %s.\n\n",
		strings.TrimSpace("go run ./cmd/bench "+strings.Join(os.Args[1:], " ")), hostDesc(), time.Now().UTC().Format("2006-01-02"), time.Since(began).Round(time.Second), what)
	printTable(os.Stdout, rows)
	return nil
}

// benchPoll times Fetcher.Resolve with no listing cache: exactly the work
// of an agent poll that finds the revision unchanged.
func (e *env) benchPoll(ctx context.Context, n int) (row, error) {
	repo, err := e.git.CreateRepo("poll")
	if err != nil {
		return row{}, err
	}
	if _, err := repo.Commit(map[string]string{"a.yaml": "kind: ConfigMap\n"}, "poll"); err != nil {
		return row{}, err
	}
	f := source.NewFetcher(filepath.Join(e.work, "poll-cache"), source.Options{})
	var out []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := f.Resolve(ctx, repo.URL, source.Ref{Branch: "main"}, nil); err != nil {
			return row{}, err
		}
		out = append(out, time.Since(start))
		f.Forget(repo.URL)
	}
	return row{what: "no-change poll (one ls-remote, loopback)", tether: cell(out),
		note: fmt.Sprintf("median of %d; no fetch, render, apply or API request", n)}, nil
}

func p(ds []time.Duration, pct int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)*pct+99)/100-1]
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %s +%s] %s\n", time.Now().Format("15:04:05"), time.Since(started).Round(time.Second), fmt.Sprintf(format, args...))
}

var started = time.Now()

// env is what every part runs against: a control plane, a Git server, the
// agent's identity and a work folder, all removed by close.
type env struct {
	tether          string
	work            string
	cp              *testenv.ControlPlane
	git             *testenv.GitServer
	k               *kube
	agentKubeconfig string
	hub             *hub
	// agentArgs are added to every agent's flags (-agent-args).
	agentArgs []string
}

func startEnv(prefix, tether string) (*env, error) {
	e, err := startBareEnv(prefix, tether)
	if err != nil {
		return nil, err
	}
	work := e.work
	step("starting kube-apiserver + etcd")
	if e.cp, err = testenv.StartControlPlane(testenv.ControlPlaneOptions{}); err != nil {
		e.close()
		return nil, err
	}
	if e.git, err = testenv.StartGitServer(filepath.Join(work, "git"), testenv.GitServerOptions{}); err != nil {
		e.close()
		return nil, err
	}
	if e.k, err = newKube(e.cp.Config); err != nil {
		e.close()
		return nil, err
	}
	if e.agentKubeconfig, err = e.k.agentIdentity(context.Background(), e.cp.Config, work); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	if e.hub != nil {
		e.hub.stop()
	}
	if e.git != nil {
		_ = e.git.Close()
	}
	if e.cp != nil {
		_ = e.cp.Stop()
	}
	_ = os.RemoveAll(e.work)
}

func hostDesc() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	cpus := 0
	if err == nil {
		cpus = strings.Count(string(b), "\nprocessor")
		if strings.HasPrefix(string(b), "processor") {
			cpus++
		}
	}
	return fmt.Sprintf("%d CPUs", cpus)
}
