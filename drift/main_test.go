package drift

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"tether.dev/tether/apply"
	"tether.dev/tether/internal/testenv"
)

// cfg is an admin rest config of the package's control plane; k8s is a
// client on it; applier applies as Tether does.
var (
	cfg     *rest.Config
	k8s     client.Client
	applier *apply.Manager
)

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, testenv.ControlPlaneOptions{}, func(cp *testenv.ControlPlane) (func() error, error) {
		ctrllog.SetLogger(logr.Discard())
		cfg = rest.CopyConfig(cp.Config)
		cfg.QPS, cfg.Burst = 200, 400
		var err error
		if k8s, err = client.New(cfg, client.Options{}); err != nil {
			return nil, err
		}
		applier = apply.NewManager(k8s, apply.ManagerOptions{})
		return nil, nil
	}))
}

func testContext(tb testing.TB) context.Context { return testenv.Context(tb, 5*time.Minute) }

func newNamespace(tb testing.TB) string { return testenv.NewNamespace(tb, k8s, "drift") }

// counter counts the HTTP requests made through a rest config.
type counter struct{ n atomic.Int64 }

func (c *counter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		c.n.Add(1)
		return rt.RoundTrip(r)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// countedConfig returns a copy of cfg whose requests c counts.
func countedConfig(c *counter) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Wrap(c.wrap)
	return out
}

// change is one OnChange call and when it came.
type change struct {
	owner Owner
	at    time.Time
}

// harness is a started Tracker whose requests are counted and whose
// OnChange calls arrive on changes.
type harness struct {
	tracker  *Tracker
	requests *counter
	changes  chan change
}

func newHarness(tb testing.TB) *harness {
	tb.Helper()
	h := &harness{requests: &counter{}, changes: make(chan change, 64)}
	tr, err := NewTracker(countedConfig(h.requests), k8s.RESTMapper(), Options{
		Logger: slog.New(slog.DiscardHandler),
		OnChange: func(o Owner) {
			select {
			case h.changes <- change{o, time.Now()}:
			default:
			}
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Start(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
	})
	h.tracker = tr
	return h
}

// waitChange waits for OnChange(owner) and returns when it was called.
func (h *harness) waitChange(tb testing.TB, owner Owner) time.Time {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case c := <-h.changes:
			if c.owner == owner {
				return c.at
			}
		case <-timeout:
			tb.Fatalf("no OnChange(%s) within 10s", owner)
		}
	}
}

// waitSuspects waits until owner has n suspects: several out-of-band
// changes reach the watch cache one event at a time.
func (h *harness) waitSuspects(tb testing.TB, owner Owner, n int) {
	tb.Helper()
	testenv.Eventually(tb, 10*time.Second, func() error {
		if got := h.tracker.Suspects(owner); len(got) < n {
			return fmt.Errorf("suspects = %+v, want %d", got, n)
		}
		return nil
	})
}

// applyAndRecord plans and applies objs for owner, as the sync loop
// does, and records the result.
func (h *harness) applyAndRecord(tb testing.TB, owner Owner, objs []*unstructured.Unstructured) *apply.Result {
	tb.Helper()
	ctx := testContext(tb)
	plan, err := applier.Plan(ctx, objs, apply.Options{Owner: apply.Owner(owner)})
	if err != nil {
		tb.Fatalf("plan: %v", err)
	}
	res, err := applier.Apply(ctx, plan)
	if err != nil {
		tb.Fatalf("apply: %v", err)
	}
	if err := h.tracker.Record(ctx, owner, plan.Objects, res.Live); err != nil {
		tb.Fatalf("record: %v", err)
	}
	return res
}

// readObjects reads a YAML fixture from testdata/, replacing ${KEY} with
// vars[KEY].
func readObjects(tb testing.TB, name string, vars map[string]string) []*unstructured.Unstructured {
	tb.Helper()
	objs, err := testenv.ReadObjects("testdata/"+name, vars)
	if err != nil {
		tb.Fatal(err)
	}
	return objs
}
