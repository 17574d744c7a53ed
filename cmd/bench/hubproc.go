package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tether.dev/tether/hub/store"
)

// hubSet is one setup of the hub part: `tether hub` processes on one
// database (one on SQLite, or replicas on PostgreSQL), started from this
// tree's binary.
type hubSet struct {
	name string
	db   string
	hubs []*hub
	// apiToken reads /metrics.
	apiToken string
}

// startHubSet runs n hubs on db (n > 1 only on PostgreSQL: replicas, each
// with its --peer-url) and waits until each answers /healthz.
func (e *env) startHubSet(ctx context.Context, name, db string, n int) (*hubSet, error) {
	s := &hubSet{name: name, db: db}
	st, err := store.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	s.apiToken, err = st.CreateToken(ctx, store.KindAPI, "bench")
	st.Close()
	if err != nil {
		return nil, err
	}
	secretFile := filepath.Join(e.work, "webhook-secret")
	const secret = "bench-webhook-secret"
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		return nil, err
	}
	for i := range n {
		addr, err := freeAddr()
		if err != nil {
			s.stop()
			return nil, err
		}
		h := &hub{url: "http://" + addr, secret: secret}
		args := []string{"hub", "--listen", addr, "--db", db, "--webhook-secret-file", secretFile, "--log-level", "error"}
		if n > 1 {
			args = append(args, "--peer-url", h.url)
		}
		if h.proc, err = e.start(ctx, fmt.Sprintf("hub %s #%d", name, i), args...); err != nil {
			s.stop()
			return nil, err
		}
		s.hubs = append(s.hubs, h)
		if err := pollEvery10ms(time.Minute, func() bool { return httpOK(h.url + "/healthz") }); err != nil {
			s.stop()
			return nil, fmt.Errorf("hub %s #%d /healthz: %w", name, i, err)
		}
	}
	return s, nil
}

func (s *hubSet) addrs() []string {
	var out []string
	for _, h := range s.hubs {
		out = append(out, h.url[len("http://"):])
	}
	return out
}

func (s *hubSet) stop() {
	for _, h := range s.hubs {
		h.stop()
	}
}

// hubMemory is one hub's memory at one moment: RSS from /proc, and from
// its /metrics the Go heap in use, the goroutine stacks and the
// goroutines; and the agents it counts connected.
type hubMemory struct{ rss, heap, stack, goroutines, agents int64 }

// memory reads each hub's memory.
func (s *hubSet) memory(ctx context.Context) ([]hubMemory, error) {
	var out []hubMemory
	for _, h := range s.hubs {
		rss, _, err := h.memory()
		if err != nil {
			return nil, err
		}
		m := hubMemory{rss: rss}
		if err := readGauges(ctx, h.url+"/metrics", s.apiToken, map[string]*int64{
			"go_memstats_heap_inuse_bytes":  &m.heap,
			"go_memstats_stack_inuse_bytes": &m.stack,
			"go_goroutines":                 &m.goroutines,
			"tether_hub_connected_agents":   &m.agents,
		}); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// readGauges reads the unlabelled gauges named in into from a Prometheus
// text page.
func readGauges(ctx context.Context, url, token string, into map[string]*int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found := 0
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if p := into[name]; ok && p != nil {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return fmt.Errorf("%s: %s %q: %w", url, name, v, err)
			}
			*p = int64(f)
			found++
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if found != len(into) {
		return fmt.Errorf("%s: %d of the %d gauges asked for", url, found, len(into))
	}
	return nil
}

func sumMemory(ms []hubMemory) (m hubMemory) {
	for _, x := range ms {
		m.rss += x.rss
		m.heap += x.heap
		m.stack += x.stack
		m.goroutines += x.goroutines
		m.agents += x.agents
	}
	return m
}

// perAgent describes what n agents added between idle and with: RSS, heap
// and stacks per agent, and goroutines per agent.
func perAgent(idle, with hubMemory, n int) string {
	kib := func(a, b int64) float64 { return float64(b-a) / float64(n) / 1024 }
	return fmt.Sprintf("per agent %.1f KiB RSS, of which Go heap %.1f KiB and goroutine stacks %.1f KiB; %.1f goroutines per agent",
		kib(idle.rss, with.rss), kib(idle.heap, with.heap), kib(idle.stack, with.stack), float64(with.goroutines-idle.goroutines)/float64(n))
}

// createAgents makes n agents, each with an agent token of its own, in
// the store on db: the store API (what `tether hub token create --agent`
// calls), from parallel goroutines, instead of n processes.
func createAgents(ctx context.Context, db string, from, n, parallel int) ([]*simAgent, error) {
	st, err := store.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	agents := make([]*simAgent, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, parallel)
	for w := range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				a := newSimAgent(from+i, "")
				tok, err := st.CreateToken(ctx, store.KindAgent, a.name)
				if err != nil {
					errs[w] = err
					return
				}
				a.token = tok
				agents[i] = a
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return agents, nil
}

// front is the bench's own round-robin TCP front of the replicas, as a
// Service or load balancer would be: each connection goes to the next
// backend that takes it; when a backend dies, its connections close.
type front struct {
	l        net.Listener
	backends []string
	next     atomic.Uint64
	wg       sync.WaitGroup
}

func startFront(backends []string) (*front, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &front{l: l, backends: backends}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f, nil
}

func (f *front) addr() string { return f.l.Addr().String() }

func (f *front) serve(c net.Conn) {
	defer c.Close()
	var b net.Conn
	for range f.backends {
		addr := f.backends[f.next.Add(1)%uint64(len(f.backends))]
		var err error
		if b, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			break
		}
	}
	if b == nil {
		return
	}
	defer b.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
	<-done
}

func (f *front) close() {
	_ = f.l.Close()
	f.wg.Wait()
}
