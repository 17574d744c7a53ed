package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

// fleetObjects is the size of each fleet GitSync.
const fleetObjects = 10

// fleetFigures is what one fleet size measured.
type fleetFigures struct {
	n                int
	ready, live      time.Duration
	idleReqs         int64
	idleListings     int
	idleFetches      int
	rss, hwm         int64
	interval         time.Duration
	matched, applied int
}

// benchFleets runs benchFleet for each size, each with a fresh agent, and
// prints how each figure grows from the smallest size.
func (e *env) benchFleets(ctx context.Context, o options) ([]row, error) {
	if _, err := e.ensureHub(ctx); err != nil {
		return nil, err
	}
	var figs []fleetFigures
	for _, n := range o.fleets {
		f, err := e.benchFleet(ctx, n, o.fleetInterval)
		if err != nil {
			return nil, err
		}
		figs = append(figs, f)
	}
	var rows []row
	base := figs[0]
	growth := func(f fleetFigures, v, b float64) string {
		if f.n == base.n || b == 0 {
			return ""
		}
		return fmt.Sprintf("; ×%.1f for ×%g GitSyncs", v/b, float64(f.n)/float64(base.n))
	}
	for _, f := range figs {
		size := fmt.Sprintf("%s GitSyncs × %d objects, one repository", thousands(f.n), fleetObjects)
		rows = append(rows,
			row{what: "create → all Ready, " + size, tether: round(f.ready),
				target: targetAt("< 60 s", f.n, 1000, f.ready < time.Minute),
				note:   "10 GitSyncs per namespace, each applies as its namespace's deployer account" + growth(f, float64(f.ready), float64(base.ready))},
			row{what: "one commit touching all → live everywhere, " + size, tether: round(f.live),
				target: targetAt("< 30 s", f.n, 1000, f.live < 30*time.Second),
				note: fmt.Sprintf("one push webhook → hub matched %d GitSyncs → %d ConfigMaps changed%s",
					f.matched, f.applied, growth(f, float64(f.live), float64(base.live)))},
			row{what: "API requests per idle interval, " + size, tether: fmt.Sprint(f.idleReqs),
				target: targetAt("0", f.n, 1000, f.idleReqs == 0),
				note: fmt.Sprintf("over %s (interval %s), counted by the API server (APF FlowSchema of the agent's identity); Git meanwhile: %d ref listings, %d fetches",
					f.interval+f.interval/5, f.interval, f.idleListings, f.idleFetches)},
			row{what: "agent memory, " + size, tether: mib(f.rss),
				target: targetAt("< 150 MiB", f.n, 1000, f.rss < 150<<20),
				note:   fmt.Sprintf("VmRSS after the idle interval; peak (VmHWM) %s%s", mib(f.hwm), growth(f, float64(f.rss), float64(base.rss)))})
	}
	return rows, nil
}

// benchFleet creates n GitSyncs of fleetObjects objects each, all on one
// repository, then times one commit that touches every one of them, then
// counts what the agent does over one idle interval.
func (e *env) benchFleet(ctx context.Context, n int, interval time.Duration) (fleetFigures, error) {
	f := fleetFigures{n: n, interval: interval}
	k := e.k
	set := fmt.Sprintf("fleet-%d", n)
	repo, err := e.git.CreateRepo(set)
	if err != nil {
		return f, err
	}
	content := func(v string) map[string]string {
		files := map[string]string{}
		for i := 0; i < n; i++ {
			for p, y := range mixFiles(fmt.Sprintf("g%04d", i), fleetObjects, "", fmt.Sprintf("g%04d-", i), v) {
				files[p] = y
			}
		}
		return files
	}
	if _, err := repo.Commit(content(set+"-v1"), "fleet"); err != nil {
		return f, err
	}
	step("fleet %d: namespaces and deployer accounts", n)
	var syncs []*v1alpha1.GitSync
	var namespaces []string
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("%s-%d", set, i/10)
		if i%10 == 0 {
			namespaces = append(namespaces, ns)
			if err := k.tenant(ctx, ns, false); err != nil {
				return f, err
			}
		}
		gs := gitSync(fmt.Sprintf("g%04d", i), ns, repo.URL, fmt.Sprintf("./g%04d", i), interval)
		gs.Labels = map[string]string{setLabel: set}
		syncs = append(syncs, gs)
	}
	agent, err := e.startAgent(ctx, set, e.hub.agentArgs()...)
	if err != nil {
		return f, err
	}
	defer agent.stop()

	step("fleet %d: create → all Ready", n)
	if f.ready, err = k.createAllReady(ctx, syncs, set); err != nil {
		return f, err
	}
	step("fleet %d: all Ready in %s; waiting until the hub has heard of all", n, round(f.ready))
	if err := e.hub.knows(syncs); err != nil {
		return f, err
	}
	step("fleet %d: one commit touching all", n)
	// Every GitSync's ConfigMaps (one per app of three objects) carry the
	// new value once the commit is live.
	want := n * ((fleetObjects + 2) / 3)
	sha, err := repo.Commit(content(set+"-v2"), "touch all")
	if err != nil {
		return f, err
	}
	start := time.Now()
	seen := map[string]bool{}
	var watchErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchErr = k.observe(ctx, &corev1.ConfigMapList{}, func(o client.Object) bool {
			cm := o.(*corev1.ConfigMap)
			if cm.Data["value"] == set+"-v2" {
				seen[cm.Namespace+"/"+cm.Name] = true
			}
			return len(seen) == want
		}, client.HasLabels{"bench.tether.dev/app"})
	}()
	matched, err := postPush(e.hub, repo.URL, sha)
	if err != nil {
		return f, err
	}
	f.matched = matched
	if matched < n {
		return f, fmt.Errorf("fleet %d: the hub matched the push to only %d GitSyncs", n, matched)
	}
	wg.Wait()
	if watchErr != nil {
		return f, fmt.Errorf("fleet %d: %d of %d ConfigMaps live: %w", n, len(seen), want, watchErr)
	}
	f.live, f.applied = time.Since(start), len(seen)

	// Let the last status writes of the commit settle, then count one idle
	// interval (and a fifth more, so that every GitSync's poll falls in it).
	step("fleet %d: live everywhere in %s; idle for %s", n, round(f.live), interval+interval/5)
	time.Sleep(5 * time.Second)
	e.git.ResetCounts()
	if f.idleReqs, err = k.countAgent(ctx, func() error {
		time.Sleep(interval + interval/5)
		return nil
	}); err != nil {
		return f, err
	}
	gc := e.git.Counts().Repos[set]
	f.idleListings, f.idleFetches = gc.Advertisements-gc.Fetches, gc.Fetches
	if f.rss, f.hwm, err = agent.memory(); err != nil {
		return f, err
	}
	agent.stop()
	if err := k.dropGitSyncs(ctx); err != nil {
		return f, err
	}
	return f, k.purge(ctx, namespaces...)
}

// createAllReady creates the GitSyncs (labelled set) from a few workers,
// as `kubectl apply` of a folder of them would, and returns the time from
// the first create until every one is Ready.
func (k *kube) createAllReady(ctx context.Context, syncs []*v1alpha1.GitSync, set string) (time.Duration, error) {
	start := time.Now()
	errs := make(chan error, len(syncs))
	work := make(chan *v1alpha1.GitSync)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for gs := range work {
				if err := k.c.Create(ctx, gs); err != nil {
					errs <- fmt.Errorf("create GitSync %s/%s: %w", gs.Namespace, gs.Name, err)
				}
			}
		}()
	}
	for _, gs := range syncs {
		work <- gs
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	done := map[string]bool{}
	var failure error
	err := k.observe(ctx, &v1alpha1.GitSyncList{}, func(o client.Object) bool {
		gs := o.(*v1alpha1.GitSync)
		if failure = failed(gs); failure != nil {
			return true
		}
		if ready(gs) {
			done[gs.Namespace+"/"+gs.Name] = true
		}
		return len(done) == len(syncs)
	}, client.MatchingLabels{setLabel: set})
	if err == nil {
		err = failure
	}
	if err != nil {
		return 0, fmt.Errorf("%d of %d GitSyncs Ready: %w", len(done), len(syncs), err)
	}
	return time.Since(start), nil
}
