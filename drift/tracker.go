package drift

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

const (
	// DefaultFieldManager is the field manager Tether applies with; Check
	// dry-runs under it.
	DefaultFieldManager = v1alpha1.FieldManager
	// DefaultConcurrency bounds parallel Check requests when
	// Options.Concurrency is 0.
	DefaultConcurrency = 4
)

// DefaultTrustedManagers are the field managers whose additions to owned
// objects are expected (controllers filling in fields such as a PVC's
// spec.volumeName) and so not reported as Added or TakenOver. A change
// they make to a field Tether sets is still drift.
var DefaultTrustedManagers = []string{"kube-controller-manager", "kube-scheduler"}

// ErrNotStarted is returned by Record when Start was not called or ended.
var ErrNotStarted = errors.New("drift: tracker not running")

// Owner names the GitSync that owns a set of objects.
type Owner struct{ Name, Namespace string }

func (o Owner) String() string { return o.Namespace + "/" + o.Name }

// Options configures a Tracker.
type Options struct {
	// OnChange is called when a watch event makes an object of owner a
	// suspect: changed by anything past the recorded resourceVersion, or
	// deleted. Calls come from one goroutine of the Tracker, never from
	// the informers, and are coalesced per owner; a slow OnChange delays
	// later notifications but never the watch cache. Nil means no calls.
	OnChange func(Owner)
	// Logger receives one line per watch started or stopped and per
	// notification; nil means slog.Default().
	Logger *slog.Logger
	// FieldManager is the field manager Tether applies with; empty means
	// DefaultFieldManager.
	FieldManager string
	// TrustedManagers replaces DefaultTrustedManagers when not nil.
	TrustedManagers []string
	// Concurrency bounds parallel requests in Check; 0 means
	// DefaultConcurrency.
	Concurrency int
}

// Tracker keeps the watch cache and the record of what was applied for
// any number of owners. It is safe for concurrent use.
type Tracker struct {
	opts    Options
	trusted map[string]bool
	meta    metadata.Interface
	client  client.Client
	mapper  meta.RESTMapper
	log     *slog.Logger

	started chan struct{} // closed by Start
	wake    chan struct{} // one pending wake-up of the notifier

	mu       sync.Mutex
	ctx      context.Context // Start's; nil before Start
	owners   map[Owner]*ownerState
	watches  map[schema.GroupVersionResource]*watch
	mappings map[schema.GroupVersionKind]*meta.RESTMapping
	notify   map[Owner]bool // owners to tell OnChange about
	// delivering counts the OnChange calls taken from notify and not yet
	// returned: with notify, it tells whether a notification is pending.
	delivering int
}

// ownerState is the record of one owner.
type ownerState struct {
	entries map[objKey]*entry
	// recorded is set by the first Record: until then the tracker knows
	// nothing of what was applied and cannot see drift.
	recorded bool
	// held suppresses notifications while the owner's apply runs: its own
	// echoes would look like changes until Record stores their versions.
	held bool
	// changedWhileHeld remembers that an event came in while held.
	changedWhileHeld bool
	// scaled are the recorded objects an applied autoscaler scales.
	scaled []Scaled
}

// NewTracker builds a Tracker on cfg. mapper resolves kinds to resources
// (Record calls it once per new kind). cfg is copied; when it sets no rate
// limit, QPS 50 and burst 100 are used so that Check of many suspects is
// not throttled to client-go's default of 5 per second.
func NewTracker(cfg *rest.Config, mapper meta.RESTMapper, opts Options) (*Tracker, error) {
	if cfg == nil || mapper == nil {
		return nil, errors.New("drift: rest config and RESTMapper are required")
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		cfg.QPS, cfg.Burst = 50, 100
	}
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("drift: metadata client: %w", err)
	}
	cc, err := client.New(cfg, client.Options{Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("drift: client: %w", err)
	}
	if opts.FieldManager == "" {
		opts.FieldManager = DefaultFieldManager
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = DefaultConcurrency
	}
	trustedList := opts.TrustedManagers
	if trustedList == nil {
		trustedList = DefaultTrustedManagers
	}
	trusted := make(map[string]bool, len(trustedList))
	for _, m := range trustedList {
		trusted[m] = true
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Tracker{
		opts:     opts,
		trusted:  trusted,
		meta:     mc,
		client:   cc,
		mapper:   mapper,
		log:      log.With("component", "drift"),
		started:  make(chan struct{}),
		wake:     make(chan struct{}, 1),
		owners:   make(map[Owner]*ownerState),
		watches:  make(map[schema.GroupVersionResource]*watch),
		mappings: make(map[schema.GroupVersionKind]*meta.RESTMapping),
		notify:   make(map[Owner]bool),
	}, nil
}

// Start runs the tracker until ctx is done: the watches Record starts and
// the goroutine that calls OnChange. It blocks, as a controller-runtime
// Runnable does, and returns nil when ctx ends. Start may be called once.
func (t *Tracker) Start(ctx context.Context) error {
	t.mu.Lock()
	if t.ctx != nil {
		t.mu.Unlock()
		return errors.New("drift: tracker already started")
	}
	t.ctx = ctx
	t.mu.Unlock()
	close(t.started)

	for {
		select {
		case <-ctx.Done():
			t.mu.Lock()
			for gvr, w := range t.watches {
				w.stop()
				delete(t.watches, gvr)
			}
			t.mu.Unlock()
			return nil
		case <-t.wake:
			t.deliver()
		}
	}
}

// Hold suppresses OnChange for owner until Record (or the returned
// release) is called. The sync loop holds an owner around its own apply so
// that the watch echoes of that apply do not trigger another reconcile;
// changes seen while held are re-checked against the new record and
// notified then if they are still suspects.
func (t *Tracker) Hold(owner Owner) (release func()) {
	t.mu.Lock()
	st := t.ownerLocked(owner)
	st.held = true
	t.mu.Unlock()
	return func() { t.release(owner) }
}

func (t *Tracker) release(owner Owner) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.owners[owner]
	if !ok || !st.held {
		return
	}
	st.held = false
	if st.changedWhileHeld {
		st.changedWhileHeld = false
		if len(t.suspectsLocked(st, time.Now())) > 0 {
			t.queueLocked(owner)
		}
	}
}

// Forget drops everything recorded for owner and stops the watches no
// other owner needs. Call it when the GitSync is deleted.
func (t *Tracker) Forget(owner Owner) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.owners[owner]
	if !ok {
		return
	}
	delete(t.owners, owner)
	delete(t.notify, owner)
	t.releaseWatchesLocked(gvrsOf(st.entries))
}

func (t *Tracker) ownerLocked(owner Owner) *ownerState {
	st, ok := t.owners[owner]
	if !ok {
		st = &ownerState{entries: map[objKey]*entry{}}
		t.owners[owner] = st
	}
	return st
}

// queueLocked asks the notifier to call OnChange for owner.
func (t *Tracker) queueLocked(owner Owner) {
	if t.opts.OnChange == nil {
		return
	}
	t.notify[owner] = true
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// deliver calls OnChange for every queued owner that still has suspects:
// by the time it runs, a Record may have turned an echo into a match.
func (t *Tracker) deliver() {
	t.mu.Lock()
	var owners []Owner
	now := time.Now()
	for o := range t.notify {
		delete(t.notify, o)
		if st, ok := t.owners[o]; ok && !st.held && len(t.suspectsLocked(st, now)) > 0 {
			owners = append(owners, o)
		}
	}
	t.delivering += len(owners)
	t.mu.Unlock()
	for _, o := range owners {
		t.log.Debug("watched object changed", "gitsync", o.String())
		t.opts.OnChange(o)
		t.mu.Lock()
		t.delivering--
		t.mu.Unlock()
	}
}
