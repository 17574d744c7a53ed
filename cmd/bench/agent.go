package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"tether.dev/tether/internal/testenv"
)

// proc is a tether process the benchmark started: an agent or the hub.
type proc struct {
	name string
	cmd  *exec.Cmd
}

// startAgent runs `tether agent` as its own process with the agent's
// identity (identity.go), connected to the hub when hubArgs are given. Each
// part of the benchmark gets a fresh agent, so that its memory figures are
// that part's alone.
func (e *env) startAgent(ctx context.Context, name string, hubArgs ...string) (*proc, error) {
	health, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{"agent", "--kubeconfig", e.agentKubeconfig,
		"--default-service-account", testenv.DeployerAccount,
		"--cache-dir", filepath.Join(e.work, "cache-"+name),
		"--health-addr", health,
		"--leader-elect=false", "--log-level=error"}, hubArgs...)
	args = append(args, e.agentArgs...)
	p, err := e.start(ctx, "agent "+name, args...)
	if err != nil {
		return nil, err
	}
	// Timings start when the agent is ready, not while it starts.
	if err := pollEvery10ms(time.Minute, func() bool { return httpOK("http://" + health + "/readyz") }); err != nil {
		p.stop()
		return nil, fmt.Errorf("agent %s /readyz: %w", name, err)
	}
	return p, nil
}

func httpOK(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (e *env) start(ctx context.Context, name string, args ...string) (*proc, error) {
	step("starting %s: %s %s", name, e.tether, strings.Join(args[:1], " "))
	cmd := exec.CommandContext(ctx, e.tether, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &proc{name: name, cmd: cmd}, nil
}

func (p *proc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// memory reads the process's resident set size and its peak, in bytes.
func (p *proc) memory() (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm, sc.Err()
}

// hub is a running `tether hub` with a webhook secret and an agent token.
type hub struct {
	*proc
	url, secret, tokenFile string
}

// startHub runs `tether hub` on a free loopback port; agents started with
// hub.agentArgs report to it and take "sync now" from its webhooks.
func (e *env) startHub(ctx context.Context) (*hub, error) {
	h := &hub{secret: "bench-webhook-secret"}
	secretFile := filepath.Join(e.work, "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(h.secret), 0o600); err != nil {
		return nil, err
	}
	db := filepath.Join(e.work, "hub.db")
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	h.url = "http://" + addr
	if h.proc, err = e.start(ctx, "hub", "hub", "--listen", addr, "--db", db,
		"--webhook-secret-file", secretFile, "--log-level", "error"); err != nil {
		return nil, err
	}
	if err := pollEvery10ms(time.Minute, func() bool { return httpOK(h.url + "/healthz") }); err != nil {
		h.stop()
		return nil, fmt.Errorf("hub /healthz: %w", err)
	}
	tok, err := exec.Command(e.tether, "hub", "token", "create", "--db", db, "--agent", "bench").Output()
	if err != nil {
		h.stop()
		return nil, fmt.Errorf("hub token create: %w", err)
	}
	h.tokenFile = filepath.Join(e.work, "hub-token")
	if err := os.WriteFile(h.tokenFile, tok, 0o600); err != nil {
		h.stop()
		return nil, err
	}
	return h, nil
}

func (h *hub) agentArgs() []string {
	return []string{"--hub-url", h.url, "--agent-name", "bench", "--token-file", h.tokenFile}
}
