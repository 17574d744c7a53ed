package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tether.dev/tether/internal/testenv"
)

// proc is one OS process a test started, its stdout and stderr in a log
// file that is printed when the test fails.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
	stopped sync.Once
	// restarted is set when a later process took over the same log, which
	// then prints the whole log once.
	restarted bool
}

var (
	procsMu sync.Mutex
	byLog   = map[string]*proc{} // the latest process writing each log
)

// startProc starts argv in its own process group with its output in
// dir/name.log (appended, so a restarted process keeps one log). It is
// stopped, and its log printed if the test failed, when the test ends.
func startProc(t *testing.T, dir, name string, argv []string, setup func(*exec.Cmd)) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "=== %s %s\n", time.Now().Format(time.TimeOnly), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if setup != nil {
		setup(cmd)
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	procsMu.Lock()
	if prev := byLog[logPath]; prev != nil {
		prev.restarted = true
	}
	byLog[logPath] = p
	procsMu.Unlock()
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		procsMu.Lock()
		restarted := p.restarted
		procsMu.Unlock()
		if t.Failed() && !restarted {
			t.Logf("--- log of %s (%s), last lines:\n%s", name, logPath, lastLines(p.log(), 80))
		}
	})
	return p
}

// stop sends SIGTERM to the process group, waits for a graceful exit and
// kills the group after 30 s. It returns how the process ended.
func (p *proc) stop() error {
	p.stopped.Do(func() {
		if p.running() {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		}
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return p.waitErr
}

// kill sends SIGKILL to the process group, as the OOM killer or a lost
// node does: no clean-up, no lease released. It waits until the process
// is gone.
func (p *proc) kill() {
	p.stopped.Do(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	})
}

// running reports whether the process has not exited yet.
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// log is everything the process wrote so far.
func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// count is how many lines of the log contain s.
func (p *proc) count(s string) int {
	n := 0
	for _, l := range strings.Split(p.log(), "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// waitLog waits until n lines of the log contain s.
func (p *proc) waitLog(t *testing.T, s string, n int, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%d lines of %s's log containing %q", n, p.name, s), func() (bool, string) {
		if !p.running() {
			t.Fatalf("%s exited (%v) while waiting for %q", p.name, p.waitErr, s)
		}
		got := p.count(s)
		return got >= n, fmt.Sprintf("%d such lines", got)
	})
}

// eventually polls cond until it holds or timeout passes; the timeout is
// generous, for things that should happen, never an assertion about
// speed. The detail cond returns is shown when it times out.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		if ok, detail := cond(); !ok {
			return fmt.Errorf("waiting for %s; last: %s", what, detail)
		}
		return nil
	})
}

// run runs a command to completion (bounded by two minutes) and returns
// its combined output.
func run(argv ...string) (string, error) {
	var out bytes.Buffer
	err := runWith(argv, &out, &out)
	if err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// runWith runs a command to completion in its own process group, killing
// the group if it runs for more than two minutes.
func runWith(argv []string, stdout, stderr io.Writer) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
		}
		return nil
	case <-time.After(2 * time.Minute):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("%s: still running after 2m; killed", strings.Join(argv, " "))
	}
}

// mustRun is run that fails the test on an error.
func mustRun(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := run(argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// httpClient is for every request a test makes; nothing may hang a test.
var httpClient = &http.Client{Timeout: 30 * time.Second}

// get fetches url and returns the status code, body and headers.
func get(url string) (int, string, http.Header, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b), resp.Header, err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
