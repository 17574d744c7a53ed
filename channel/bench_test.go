package channel_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/agent"
	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/server"
)

// nopSink stores nothing and counts reports.
type nopSink struct{ reports atomic.Int64 }

func (*nopSink) Connected(string, *channelpb.Hello) {}
func (*nopSink) Disconnected(string)                {}
func (s *nopSink) Report(context.Context, string, *channelpb.SyncReport) (bool, error) {
	s.reports.Add(1)
	return true, nil
}

// anyAgent accepts "tok-<name>" for agent <name>.
type anyAgent struct{}

func (anyAgent) Authenticate(_ context.Context, token string) (string, error) {
	name, ok := strings.CutPrefix(token, "tok-")
	if !ok {
		return "", errors.New("unknown token")
	}
	return name, nil
}

func benchHub(b *testing.B, sink server.Sink) *hub {
	return startHub(b, "127.0.0.1:0", server.ServerOptions{
		Authenticator: anyAgent{}, Sink: sink, Logger: discard,
	}, nil)
}

var discard = slog.New(slog.DiscardHandler)

// BenchmarkReports measures reports per second through one stream into a
// no-op Sink: "agent" through the real Client (buffer, conversion, acks),
// "stream" with a hand-driven stream that pipelines reports.
func BenchmarkReports(b *testing.B) {
	b.Run("agent", func(b *testing.B) {
		sink := &nopSink{}
		h := benchHub(b, sink)
		c := startAgent(b, agent.Options{HubURL: h.url("http"), AgentName: "bench", Token: "tok-bench", Logger: discard})
		eventually(b, "connected", c.Connected)
		gss := make([]*v1alpha1.GitSync, b.N)
		for i := range gss {
			gss[i] = gitSync("apps", "gs-"+strconv.Itoa(i), "main@sha1:"+sha)
		}
		b.ResetTimer()
		start := time.Now()
		for _, gs := range gss {
			send(c, gs)
		}
		eventually(b, "all acked", func() bool { return sink.reports.Load() == int64(b.N) && c.Pending() == 0 })
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reports/s")
	})
	b.Run("stream", func(b *testing.B) {
		sink := &nopSink{}
		h := benchHub(b, sink)
		st := rawStream(b, h.addr, "tok-bench")
		if err := st.Send(hello("bench")); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		start := time.Now()
		acks := make(chan error, 1)
		go func() {
			for range b.N {
				if _, err := st.Recv(); err != nil {
					acks <- err
					return
				}
			}
			acks <- nil
		}()
		for i := range b.N {
			if err := st.Send(report("apps", "gs-"+strconv.Itoa(i%1000), uint64(i+1))); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-acks; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reports/s")
	})
}

// BenchmarkAgents connects N simulated agents (N=1000, or
// TETHER_BENCH_AGENTS), one connection and one stream each, from a child
// process so that the heap measured is the hub's alone, and reports the
// hub's memory per connection. It measures once; run it with
// -benchtime=1x.
func BenchmarkAgents(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("TETHER_BENCH_AGENTS")); err == nil && v > 0 {
		n = v
	}
	for _, scheme := range []string{"http", "ws"} {
		b.Run(fmt.Sprintf("%s/%d", scheme, n), func(b *testing.B) {
			sink := &nopSink{}
			h := benchHub(b, sink)
			before, rssBefore := heapInUse(), rss()
			goBefore := runtime.NumGoroutine()
			start := time.Now()

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), simEnv+"="+h.url(scheme), simCountEnv+"="+strconv.Itoa(n))
			stdin, err := cmd.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() {
				stdin.Close()
				_ = cmd.Wait()
			}()
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || strings.TrimSpace(line) != "ready" {
				b.Fatalf("simulated agents: %q, %v", line, err)
			}
			eventually(b, "all connected", func() bool { return len(h.srv.ConnectedAgents()) == n && sink.reports.Load() == int64(n) })
			connectAll := time.Since(start)
			after, rssAfter := heapInUse(), rss()
			if f := os.Getenv("TETHER_BENCH_HEAPPROFILE"); f != "" {
				w, err := os.Create(f + "." + scheme)
				if err == nil {
					_ = pprof.Lookup("heap").WriteTo(w, 0)
					w.Close()
				}
			}
			b.ReportMetric(float64(n), "agents")
			b.ReportMetric(float64(after-before)/float64(n), "heap-B/agent")
			b.ReportMetric(float64(rssAfter-rssBefore)/float64(n), "rss-B/agent")
			b.ReportMetric(float64(runtime.NumGoroutine()-goBefore)/float64(n), "goroutines/agent")
			b.ReportMetric(connectAll.Seconds(), "s-to-connect-all")
		})
	}
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// rss is this process's resident set in bytes, from /proc.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

const (
	simEnv      = "TETHER_SIM_AGENTS_HUB"
	simCountEnv = "TETHER_SIM_AGENTS_N"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(tunnelAgentEnv); spec != "" {
		if err := runTunnelAgent(spec); err != nil {
			fmt.Fprintln(os.Stderr, "tunnel agent:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if hub := os.Getenv(simEnv); hub != "" {
		n, _ := strconv.Atoi(os.Getenv(simCountEnv))
		if err := simulateAgents(hub, n); err != nil {
			fmt.Fprintln(os.Stderr, "simulated agents:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	stopControlPlane()
	os.Exit(code)
}

// simulateAgents opens n agents against hubURL, each on its own connection:
// Hello, Welcome, one report, its Ack. It says "ready" on stdout and holds
// them until stdin closes (or ten minutes pass), so it stops by itself when
// the benchmark ends.
func simulateAgents(hubURL string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	var (
		wg, acked sync.WaitGroup
		mu        sync.Mutex
		errs      []error
		sem       = make(chan struct{}, 64) // connections being set up at once
	)
	acked.Add(n)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			var once sync.Once
			up := func() { once.Do(func() { <-sem; acked.Done() }) }
			defer up()
			err := simulateAgent(ctx, hubURL, fmt.Sprintf("sim-%05d", i), up)
			if err != nil && ctx.Err() == nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel()
			}
		}()
	}
	acked.Wait()
	if ctx.Err() == nil {
		fmt.Println("ready")
	}
	wg.Wait()
	return errors.Join(errs...)
}

// simulateAgent keeps one agent's stream; it calls up once its report is
// acked.
func simulateAgent(ctx context.Context, hubURL, name string, up func()) error {
	var opts []grpc.DialOption
	addr := strings.TrimPrefix(hubURL, "http://")
	opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if strings.HasPrefix(hubURL, "ws://") {
		addr = "passthrough:///sim"
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			ws, _, err := websocket.Dial(ctx, hubURL+channelpb.WebSocketPath, &websocket.DialOptions{
				Subprotocols: []string{channelpb.WebSocketSubprotocol},
			})
			if err != nil {
				return nil, err
			}
			return websocket.NetConn(context.Background(), ws, websocket.MessageBinary), nil
		}))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	sctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer tok-"+name)
	st, err := channelpb.NewAgentChannelClient(conn).Connect(sctx)
	if err != nil {
		return err
	}
	if err := st.Send(hello(name)); err != nil {
		return err
	}
	if _, err := st.Recv(); err != nil {
		return fmt.Errorf("%s: welcome: %w", name, err)
	}
	if err := st.Send(report("apps", "web", 1)); err != nil {
		return err
	}
	if _, err := st.Recv(); err != nil {
		return fmt.Errorf("%s: ack: %w", name, err)
	}
	up()
	_, err = st.Recv() // until the benchmark ends
	return err
}
