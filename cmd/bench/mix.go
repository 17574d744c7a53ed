package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/internal/testenv"
)

// benchMix times one GitSync of each size of the mixed set, side by side
// with kubectl and Flux's ssa path, each run on fresh namespaces; the last
// tether run of the largest size stays synced for the drift and status
// parts.
func (e *env) benchMix(ctx context.Context, o options) ([]row, error) {
	k := e.k
	largest := slices.Max(o.sizes)
	repo, err := e.git.CreateRepo("mix")
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, n := range o.sizes {
		for r := 0; r < o.runs; r++ {
			for p, y := range mixFiles(fmt.Sprintf("mix/n%d/r%d", n, r), n, fmt.Sprintf("t%d-r%d", n, r), "", "1") {
				files[p] = y
			}
		}
	}
	step("mix: committing %d files (%v objects × %d runs)", len(files), o.sizes, o.runs)
	if _, err := repo.Commit(files, "mixed sets"); err != nil {
		return nil, err
	}
	agent, err := e.startAgent(ctx, "mix")
	if err != nil {
		return nil, err
	}
	defer agent.stop()
	flux, err := newFluxSSA(e.cp.Config)
	if err != nil {
		return nil, err
	}

	var rows []row
	var kept synced
	for _, n := range o.sizes {
		var t, kc, fx mixTimes
		for r := 0; r < o.runs; r++ {
			// The peers go first, so that the agent's watch of a kept set
			// never competes with them for the two cores.
			if o.peers {
				step("mix: %d objects, run %d/%d: kubectl", n, r+1, o.runs)
				if err := e.mixKubectl(ctx, &kc, n, r); err != nil {
					return nil, err
				}
				step("mix: %d objects, run %d/%d: flux ssa", n, r+1, o.runs)
				if err := e.mixFlux(ctx, flux, &fx, n, r); err != nil {
					return nil, err
				}
			}
			step("mix: %d objects, run %d/%d: tether", n, r+1, o.runs)
			keep := n == largest && r == o.runs-1
			s, err := e.mixTether(ctx, &t, repo.URL, n, r, keep)
			if err != nil {
				return nil, err
			}
			if keep {
				kept = s
			}
		}
		runs := fmt.Sprintf("median of %d runs; ", o.runs)
		if o.runs == 1 {
			runs = "one run; "
		}
		rows = append(rows,
			compared(fmt.Sprintf("first sync, %s objects (ConfigMaps, Deployments, Services; 10 namespaces)", thousands(n)), t.first, kc.first, fx.first, 0.6,
				runs+fmt.Sprintf("tether: GitSync created → commit listed, fetched, rendered, applied → Ready, %d API requests by the agent (last run); flux: apply only", t.firstReqs)),
			compared(fmt.Sprintf("forced resync, nothing changed, %s objects", thousands(n)), t.again, kc.again, fx.again, 0.1,
				runs+fmt.Sprintf("tether: resync annotation → Ready with the new lastHandledResyncAt, %d API requests by the agent (last run); kubectl, flux: the same apply again", t.againReqs)))
	}
	if !o.does("drift") && !o.does("flap") {
		return rows, e.dropAll(ctx, agent, kept)
	}

	rss, hwm, err := agent.memory()
	if err != nil {
		return nil, err
	}
	rows = append(rows, row{what: fmt.Sprintf("agent memory, one GitSync of %s objects watched", thousands(kept.n)),
		tether: mib(rss), note: fmt.Sprintf("VmRSS of the agent process; peak (VmHWM) %s over all the syncs above", mib(hwm))})
	if o.does("drift") {
		step("drift: %d out-of-band changes, mode correct, %d objects watched", o.driftRuns, kept.n)
		correct, err := measureCorrect(ctx, k, kept, o.driftRuns)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row{what: fmt.Sprintf("out-of-band change → corrected, %s objects watched", thousands(kept.n)),
			tether: round(median(correct)), target: targetAt("p95 < 0.5 s", kept.n, 5000, p(correct, 95) < 500*time.Millisecond),
			note: fmt.Sprintf("median; p95 %s over %d changes (another field manager edits a ConfigMap; timed until the value is back)", round(p(correct, 95)), len(correct))})
	}
	if o.does("flap") {
		step("flap: a Deployment's status written 10×/s for %s", o.flap)
		reqs, writes, err := measureFlap(ctx, k, kept, o.flap, 10)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row{what: fmt.Sprintf("API requests by the agent while a Deployment's status changes 10×/s for %s", o.flap),
			tether: fmt.Sprint(reqs), target: "0: " + verdict(reqs == 0),
			note: fmt.Sprintf("%d status writes by another client; drift mode correct; counted by the API server (APF FlowSchema of the agent's identity)", writes)})
	}
	if o.does("drift") {
		step("drift: %d out-of-band changes, mode detect", o.driftRuns)
		detect, err := measureDetect(ctx, k, kept, o.driftRuns, o.driftRuns)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row{what: fmt.Sprintf("out-of-band change → Drifted=True (mode detect), %s objects watched", thousands(kept.n)),
			tether: round(median(detect)), note: fmt.Sprintf("median; p95 %s over %d changes", round(p(detect, 95)), len(detect))})
	}
	return rows, e.dropAll(ctx, agent, kept)
}

// mixTimes collects one tool's timings of one size.
type mixTimes struct {
	first, again         []time.Duration
	firstReqs, againReqs int64 // the agent's API requests in the last run
}

// mixTether times a GitSync of run r's objects: created → Ready, then a
// forced resync. Unless keep, the GitSync and its objects are removed
// again; else they stay for the drift and status parts.
func (e *env) mixTether(ctx context.Context, t *mixTimes, url string, n, r int, keep bool) (synced, error) {
	k := e.k
	prefix := fmt.Sprintf("t%d-r%d", n, r)
	s := synced{key: types.NamespacedName{Namespace: prefix, Name: "mix"}, nsPrefix: prefix, n: n}
	if err := k.tenant(ctx, prefix, true); err != nil {
		return s, err
	}
	if err := k.namespaces(ctx, mixNamespaceNames(prefix, n)...); err != nil {
		return s, err
	}
	gs := gitSync(s.key.Name, prefix, url, fmt.Sprintf("./mix/n%d/r%d", n, r), time.Hour)
	var d time.Duration
	var err error
	t.firstReqs, err = k.countAgent(ctx, func() (err error) {
		d, err = k.firstSync(ctx, gs)
		return err
	})
	if err != nil {
		return s, err
	}
	t.first = append(t.first, d)
	step("mix: %d objects, run %d: tether first sync %s; forced resync", n, r+1, round(d))
	t.againReqs, err = k.countAgent(ctx, func() (err error) {
		d, err = k.resync(ctx, s.key, fmt.Sprintf("bench-%d", r))
		return err
	})
	if err != nil {
		return s, err
	}
	t.again = append(t.again, d)
	if keep {
		return s, nil
	}
	if err := k.release(ctx, s.key); err != nil {
		return s, err
	}
	return s, k.purge(ctx, mixNamespaceNames(prefix, n)...)
}

// mixKubectl times `kubectl apply --server-side` of run r's objects, in
// namespaces of its own, twice.
func (e *env) mixKubectl(ctx context.Context, t *mixTimes, n, r int) error {
	prefix := fmt.Sprintf("k%d-r%d", n, r)
	dir := filepath.Join(e.work, "kubectl", prefix)
	if err := writeFiles(dir, mixFiles(".", n, prefix, "", "1")); err != nil {
		return err
	}
	if err := e.k.namespaces(ctx, mixNamespaceNames(prefix, n)...); err != nil {
		return err
	}
	for _, ds := range []*[]time.Duration{&t.first, &t.again} {
		d, err := e.kubectlApply(ctx, dir)
		if err != nil {
			return err
		}
		*ds = append(*ds, d)
	}
	return e.k.purge(ctx, mixNamespaceNames(prefix, n)...)
}

// mixFlux times Flux's ssa.ApplyAllStaged of run r's objects, in
// namespaces of its own, twice.
func (e *env) mixFlux(ctx context.Context, flux *fluxSSA, t *mixTimes, n, r int) error {
	prefix := fmt.Sprintf("f%d-r%d", n, r)
	objs, err := decode(mixFiles(".", n, prefix, "", "1"))
	if err != nil {
		return err
	}
	if err := e.k.namespaces(ctx, mixNamespaceNames(prefix, n)...); err != nil {
		return err
	}
	for _, ds := range []*[]time.Duration{&t.first, &t.again} {
		d, err := flux.apply(ctx, objs)
		if err != nil {
			return err
		}
		*ds = append(*ds, d)
	}
	return e.k.purge(ctx, mixNamespaceNames(prefix, n)...)
}

// dropAll stops the agent, then deletes every GitSync left (finalizers
// removed: nothing prunes) and purges the kept set's objects, so that the
// next part's agent starts on an empty cluster.
func (e *env) dropAll(ctx context.Context, agent *proc, kept synced) error {
	agent.stop()
	if err := e.k.dropGitSyncs(ctx); err != nil {
		return err
	}
	if kept.n == 0 {
		return nil
	}
	return e.k.purge(ctx, mixNamespaceNames(kept.nsPrefix, kept.n)...)
}

// kubectlApply runs `kubectl apply --server-side` on dir with the kubectl
// that `make test-bin` built at the control plane's version: never the one
// on PATH, whose speed says nothing about a current kubectl.
func (e *env) kubectlApply(ctx context.Context, dir string) (time.Duration, error) {
	bin, err := testenv.BinDir()
	if err != nil {
		return 0, err
	}
	kubectl := filepath.Join(bin, "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		return 0, fmt.Errorf("no pinned kubectl (run make test-bin): %w", err)
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", e.cp.KubeconfigPath, "--cache-dir", filepath.Join(e.work, "kubectl-cache"),
		"apply", "--server-side", "--field-manager", "bench-kubectl", "-f", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("kubectl apply: %v: %s", err, lastLine(out))
	}
	return time.Since(start), nil
}

func writeFiles(dir string, files map[string]string) error {
	for p, y := range files {
		path := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(y), 0o644); err != nil {
			return err
		}
	}
	return nil
}
