// Command bench measures the agent end to end on this machine and prints a
// table: the cost of a poll that finds nothing new, the first sync and a
// forced no-change resync of 200 and 1000 objects, side by side with
// `kubectl apply --server-side` of the same objects, and the agent's memory.
// It starts its own control plane and Git server (internal/testenv) and
// runs the real `tether agent` binary as a separate process, so the memory
// figures are the agent's alone. Timings are medians of several runs.
// `bench -mode webhook` instead times commit → webhook → hub → agent →
// applied (webhook.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"tether.dev/tether/internal/testenv"
	"tether.dev/tether/source"
)

func main() {
	var (
		tether = flag.String("tether", "bin/tether", "the tether binary to run as the agent")
		sizes  = intList{200, 1000}
		runs   = flag.Int("runs", 3, "runs per measurement (the median is printed)")
		polls  = flag.Int("polls", 20, "no-change polls to time")
		driftN = flag.Int("drift-objects", 5000, "objects of the GitSync whose drift handling is timed (0: skip); the agent's memory is read with it synced")
		driftR = flag.Int("drift-runs", 10, "out-of-band changes timed per drift mode")
		mode   = flag.String("mode", "agent", "agent: the agent's table below; webhook: commit → webhook → hub → agent → applied (see webhook.go)")
		hooks  = flag.Int("commits", 20, "with -mode webhook: commits to time")
	)
	flag.Var(&sizes, "sizes", "comma-separated object counts")
	flag.Parse()
	if *mode == "webhook" {
		if err := runWebhook(*tether, *hooks); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *mode != "agent" {
		fmt.Fprintln(os.Stderr, "bench: -mode is agent or webhook")
		os.Exit(2)
	}
	if err := run(*tether, sizes, *runs, *polls, *driftN, *driftR); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(tetherBin string, sizes []int, runs, polls, driftN, driftRuns int) error {
	ctx := context.Background()
	e, err := startEnv("tether-bench-")
	if err != nil {
		return err
	}
	defer e.close()
	work, cp := e.work, e.cp
	repo, err := e.git.CreateRepo("bench")
	if err != nil {
		return err
	}
	files := map[string]string{}
	committed := sizes
	if driftN > 0 && !slices.Contains(sizes, driftN) {
		committed = append(slices.Clone(sizes), driftN)
	}
	for _, n := range committed {
		for k, v := range configMaps(n) {
			files[k] = v
		}
	}
	step("committing %v ConfigMaps", committed)
	if _, err := repo.Commit(files, "bench objects"); err != nil {
		return err
	}

	var rows []row
	pollTimes, err := timePolls(ctx, repo.URL, work, polls)
	if err != nil {
		return err
	}
	rows = append(rows, row{what: "no-change poll (one ls-remote, loopback)", tether: median(pollTimes), note: fmt.Sprintf("%d polls; no fetch, render, apply or API request", polls)})

	step("starting the agent: %s agent", tetherBin)
	agent := exec.CommandContext(ctx, tetherBin, "agent", "--kubeconfig", cp.KubeconfigPath, "--default-service-account", testenv.DeployerAccount,
		"--cache-dir", filepath.Join(work, "cache"), "--leader-elect=false", "--log-level=error")
	agent.Stdout, agent.Stderr = os.Stderr, os.Stderr
	if err := agent.Start(); err != nil {
		return err
	}
	defer func() { _ = agent.Process.Kill(); _ = agent.Wait() }()

	k := newKube(cp)
	for _, n := range sizes {
		var first, resync, kubectlFirst, kubectlAgain []time.Duration
		for i := 0; i < runs; i++ {
			step("%d objects, run %d/%d", n, i+1, runs)
			name := fmt.Sprintf("bench-%d-%d", n, i)
			ns := name
			d, err := k.firstSync(ctx, name, ns, repo.URL, fmt.Sprintf("./n%d", n))
			if err != nil {
				return err
			}
			first = append(first, d)
			if d, err = k.resync(ctx, name, fmt.Sprint(i)); err != nil {
				return err
			}
			resync = append(resync, d)
			if err := k.deleteSync(ctx, name, ns); err != nil {
				return err
			}

			kns := "kubectl-" + name
			dir := filepath.Join(repo.Dir, fmt.Sprintf("n%d", n))
			if d, err = kubectlApply(ctx, cp.KubeconfigPath, kns, dir); err != nil {
				return err
			}
			kubectlFirst = append(kubectlFirst, d)
			if d, err = kubectlApply(ctx, cp.KubeconfigPath, kns, dir); err != nil {
				return err
			}
			kubectlAgain = append(kubectlAgain, d)
		}
		rows = append(rows,
			row{what: fmt.Sprintf("first sync, %d objects", n), tether: median(first), kubectl: median(kubectlFirst),
				note: "commit listed → fetched → rendered → applied → Ready"},
			row{what: fmt.Sprintf("forced resync, nothing changed, %d objects", n), tether: median(resync), kubectl: median(kubectlAgain),
				note: "annotation → render → apply (one server-side apply per object) → status"})
	}
	watched := 0
	if driftN > 0 {
		step("drift: %d objects, %d changes per mode", driftN, driftRuns)
		detect, correct, err := measureDrift(ctx, k, repo.URL, driftN, driftRuns)
		if err != nil {
			return err
		}
		watched = driftN
		rows = append(rows,
			row{what: fmt.Sprintf("out-of-band change → Drifted=True (detect), %d watched", driftN), tether: median(detect),
				note: fmt.Sprintf("p95 %s over %d changes; watch event → dry-run of the one object → status", round(p95(detect)), len(detect))},
			row{what: fmt.Sprintf("out-of-band change → corrected (correct), %d watched", driftN), tether: median(correct),
				note: fmt.Sprintf("p95 %s over %d changes; value put back by a re-apply of that object", round(p95(correct)), len(correct))})
	}
	rss, hwm, err := memory(agent.Process.Pid)
	if err != nil {
		return err
	}
	printTable(rows, rss, hwm, watched)
	return nil
}

// timePolls times Fetcher.Resolve with no listing cache: exactly the work
// of an agent poll that finds the revision unchanged.
func timePolls(ctx context.Context, url, work string, n int) ([]time.Duration, error) {
	f := source.NewFetcher(filepath.Join(work, "poll-cache"), source.Options{})
	var out []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := f.Resolve(ctx, url, source.Ref{Branch: "main"}, nil); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
		f.Forget(url)
	}
	return out, nil
}

func configMaps(n int) map[string]string {
	files := map[string]string{}
	for i := 0; i < n; i++ {
		files[fmt.Sprintf("n%d/cm-%04d.yaml", n, i)] = fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-%04d
data:
  index: "%d"
  payload: "%s"
`, i, i, "tether-bench-payload-0123456789abcdef")
	}
	return files
}

// kubectlApply runs `kubectl apply --server-side` with the kubectl that
// `make test-bin` built at the control plane's version: never the one on
// PATH, whose speed says nothing about a current kubectl.
func kubectlApply(ctx context.Context, kubeconfig, ns, dir string) (time.Duration, error) {
	bin, err := testenv.BinDir()
	if err != nil {
		return 0, err
	}
	kubectl := filepath.Join(bin, "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		return 0, fmt.Errorf("no pinned kubectl (run make test-bin): %w", err)
	}
	create := exec.CommandContext(ctx, kubectl, "--kubeconfig", kubeconfig, "create", "namespace", ns)
	_ = create.Run() // exists on the second apply
	start := time.Now()
	cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side",
		"--field-manager", "bench", "-n", ns, "-f", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("kubectl apply: %v: %s", err, lastLine(out))
	}
	return time.Since(start), nil
}

func p95(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)*95+99)/100-1]
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
	fmt.Fprintf(os.Stderr, "[bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// env is what every benchmark runs against: a control plane and a Git
// server, with a work folder, all removed by close.
type env struct {
	work string
	cp   *testenv.ControlPlane
	git  *testenv.GitServer
}

func startEnv(prefix string) (*env, error) {
	work, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	e := &env{work: work}
	step("starting kube-apiserver + etcd")
	if e.cp, err = testenv.StartControlPlane(testenv.ControlPlaneOptions{}); err != nil {
		e.close()
		return nil, err
	}
	if e.git, err = testenv.StartGitServer(filepath.Join(work, "git"), testenv.GitServerOptions{}); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	if e.git != nil {
		_ = e.git.Close()
	}
	if e.cp != nil {
		_ = e.cp.Stop()
	}
	_ = os.RemoveAll(e.work)
}
