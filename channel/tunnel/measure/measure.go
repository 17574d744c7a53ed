// Package measure times and sizes Kubernetes API requests through the
// hub's tunnel against the same requests made straight to the API server
// as the same identity, so that the difference is the tunnel's cost
// alone. The channel package's benchmarks (an in-process hub) and `make
// bench` (cmd/bench: the real hub and agent processes) both measure with
// it. It is measuring code only: nothing of the product imports it.
package measure

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// Options say how to reach the same path both ways.
type Options struct {
	// ProxyURL is the hub's proxy of one agent: <hub>/k8s-proxy/<agent>.
	ProxyURL string
	// HubCA verifies an https hub; nil for plain http.
	HubCA []byte
	// Token is a hub token with the proxy action.
	Token string
	// Direct reaches the API server with rights to impersonate.
	Direct *rest.Config
	// User and Groups are whom the agent impersonates for Token's
	// principal; direct requests impersonate them too.
	User   string
	Groups []string
}

// Clients make requests through the tunnel or direct.
type Clients struct {
	o                    Options
	tunnel, direct       *http.Client
	tunnelURL, directURL string
}

// New prepares both ways.
func New(o Options) (*Clients, error) {
	direct, err := rest.TransportFor(o.Direct)
	if err != nil {
		return nil, fmt.Errorf("measure: direct transport: %w", err)
	}
	tr := &http.Transport{ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 200}
	if o.HubCA != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(o.HubCA) {
			return nil, errors.New("measure: no certificate in the hub's CA")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &Clients{
		o: o, tunnel: &http.Client{Transport: tr}, direct: &http.Client{Transport: direct},
		tunnelURL: strings.TrimSuffix(o.ProxyURL, "/"), directURL: strings.TrimSuffix(o.Direct.Host, "/"),
	}, nil
}

// Open starts a GET of path (with its query) and returns once the
// headers are in; a status other than 200 is an error.
func (c *Clients) Open(ctx context.Context, viaTunnel bool, path string) (*http.Response, error) {
	url, client := c.directURL+path, c.direct
	if viaTunnel {
		url, client = c.tunnelURL+path, c.tunnel
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if viaTunnel {
		req.Header.Set("Authorization", "Bearer "+c.o.Token)
	} else {
		req.Header.Set("Impersonate-User", c.o.User)
		for _, g := range c.o.Groups {
			req.Header.Add("Impersonate-Group", g)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return resp, nil
}

// Get makes one request, reads the whole answer and returns its size.
func (c *Clients) Get(ctx context.Context, viaTunnel bool, path string) (int64, error) {
	resp, err := c.Open(ctx, viaTunnel, path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(io.Discard, resp.Body)
}

// Time makes one request and returns how long it took, answer read.
func (c *Clients) Time(ctx context.Context, viaTunnel bool, path string) (time.Duration, error) {
	start := time.Now()
	_, err := c.Get(ctx, viaTunnel, path)
	return time.Since(start), err
}

// Alternate makes warm requests each way unmeasured (connections,
// caches), then n each way, alternately, so that both see the same
// machine; it returns both samples.
func (c *Clients) Alternate(ctx context.Context, path string, warm, n int) (viaTunnel, direct []time.Duration, err error) {
	for i := range warm + n {
		t, err := c.Time(ctx, true, path)
		if err != nil {
			return nil, nil, err
		}
		d, err := c.Time(ctx, false, path)
		if err != nil {
			return nil, nil, err
		}
		if i >= warm {
			viaTunnel, direct = append(viaTunnel, t), append(direct, d)
		}
	}
	return viaTunnel, direct, nil
}

// Percentile is the p-th (0..1) of d, nearest rank; 0 for none.
func Percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// Memory is what open tunnelled watches cost.
type Memory struct {
	// HubPerWatch is the hub's heap growth per open watch, in bytes.
	HubPerWatch float64
	// AgentPerRequest is the agent's heap growth per open request.
	AgentPerRequest float64
	// AgentWith is the agent's heap with all of them open.
	AgentWith int64
}

// HeapFunc reads a process's heap in use, in bytes.
type HeapFunc func() (int64, error)

// Watches opens n watches of path through the tunnel and reads the hub's
// and the agent's heap before and with all of them open. clientInHub says
// the hub runs in the measuring process, so its heap holds the client's
// side of the watches too: the growth n direct watches cause is then
// subtracted.
func (c *Clients) Watches(ctx context.Context, path string, n int, hub, agent HeapFunc, clientInHub bool) (Memory, error) {
	var clientOnly int64
	if clientInHub {
		grown, closeAll, err := c.openAll(ctx, false, path, n, hub)
		if err != nil {
			return Memory{}, err
		}
		closeAll()
		clientOnly = grown
	}
	agentBefore, err := agent()
	if err != nil {
		return Memory{}, err
	}
	grown, closeAll, err := c.openAll(ctx, true, path, n, hub)
	if err != nil {
		return Memory{}, err
	}
	defer closeAll()
	agentWith, err := agent()
	if err != nil {
		return Memory{}, err
	}
	return Memory{
		HubPerWatch:     float64(grown-clientOnly) / float64(n),
		AgentPerRequest: float64(agentWith-agentBefore) / float64(n),
		AgentWith:       agentWith,
	}, nil
}

// openAll opens n watches and returns how much heap grew meanwhile and
// how to close them.
func (c *Clients) openAll(ctx context.Context, viaTunnel bool, path string, n int, heap HeapFunc) (int64, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	var open []*http.Response
	closeAll := func() {
		cancel()
		for _, resp := range open {
			resp.Body.Close()
		}
	}
	before, err := heap()
	if err != nil {
		closeAll()
		return 0, nil, err
	}
	for range n {
		resp, err := c.Open(ctx, viaTunnel, path)
		if err != nil {
			closeAll()
			return 0, nil, err
		}
		open = append(open, resp)
	}
	after, err := heap()
	if err != nil {
		closeAll()
		return 0, nil, err
	}
	return after - before, closeAll, nil
}

// HeapFromMetrics reads go_memstats_heap_inuse_bytes from a Prometheus
// text endpoint (the hub's /metrics with a read token, the agent's
// metrics address without).
func HeapFromMetrics(ctx context.Context, url, token string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_inuse_bytes "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("%s: go_memstats_heap_inuse_bytes %q: %w", url, v, err)
			}
			return int64(f), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no go_memstats_heap_inuse_bytes", url)
}
