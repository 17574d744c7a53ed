package events

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"tether.dev/tether/channel/channelpb"
)

// Owners maps an object to the GitSync that manages it. The agent wires
// it to the drift tracker, which knows what each GitSync applied.
type Owners interface {
	OwnerOf(kind, namespace, name string) (gitsyncNamespace, gitsyncName string, ok bool)
}

// Sender takes a batch to the hub. It returns false when it cannot now
// (no stream, or a hub without FEATURE_EVENTS); the batch is offered
// again later. channel/agent's Client implements it.
type Sender interface {
	SendEvents(batch *channelpb.WarningEvents) bool
}

// Options configure a Collector.
type Options struct {
	Client kubernetes.Interface
	Owners Owners
	Sender Sender
	// Rate is how many folded events per second go to the hub (default
	// 5), with bursts of Burst (default 50).
	Rate  float64
	Burst int
	// Flush is how often pending events are offered (default 1 s).
	Flush time.Duration
	// MaxPending bounds the folded events waiting to be sent (default
	// 500); new ones beyond it are dropped and counted.
	MaxPending int
	Log        *slog.Logger
}

// Stats are a collector's counters since it started.
type Stats struct {
	// Seen counts Warning events of managed objects (with repeats).
	Seen int64
	// Sent counts folded events handed to the hub.
	Sent int64
	// Dropped counts folded events dropped because MaxPending was full.
	Dropped int64
	// Pending is how many folded events wait now.
	Pending int
}

type key struct {
	gsNamespace, gsName, kind, namespace, name, reason, message string
}

type gitsync struct{ namespace, name string }

// Collector watches Warning events and sends those of managed objects.
type Collector struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	pending map[key]*channelpb.WarningEvent
	order   []key // oldest first
	counts  map[gitsync]int64
	stats   Stats
	tokens  float64
	last    time.Time
	wake    chan struct{}
}

// New checks the options and returns a Collector; nothing runs until Run.
func New(opts Options) (*Collector, error) {
	if opts.Client == nil || opts.Owners == nil || opts.Sender == nil {
		return nil, errors.New("events: Client, Owners and Sender are required")
	}
	if opts.Rate <= 0 {
		opts.Rate = 5
	}
	if opts.Burst <= 0 {
		opts.Burst = 50
	}
	if opts.Flush <= 0 {
		opts.Flush = time.Second
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 500
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	c := &Collector{opts: opts, log: opts.Log, now: time.Now, pending: map[key]*channelpb.WarningEvent{},
		counts: map[gitsync]int64{}, tokens: float64(opts.Burst), wake: make(chan struct{}, 1)}
	c.last = c.now()
	return c, nil
}

// Count is how many Warning events of the GitSync's objects the collector
// has seen: what its report carries.
func (c *Collector) Count(namespace, name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[gitsync{namespace, name}]
}

// Stats returns the collector's counters.
func (c *Collector) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Pending = len(c.pending)
	return s
}

// Run watches Warning events until ctx ends, and sends what is pending
// every Flush as the rate allows.
func (c *Collector) Run(ctx context.Context) error {
	lw := cache.NewFilteredListWatchFromClient(c.opts.Client.CoreV1().RESTClient(), "events", metav1.NamespaceAll,
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("type", corev1.EventTypeWarning).String()
		})
	inf := cache.NewSharedIndexInformer(lw, &corev1.Event{}, 0, cache.Indexers{})
	// The informer keeps every Warning event of the cluster until the API
	// server expires it (one hour by default): keep only what observe
	// reads of each.
	if err := inf.SetTransform(slim); err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if ev, ok := obj.(*corev1.Event); ok {
				c.observe(ev, occurrences(ev))
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Event)
			n, ok2 := newObj.(*corev1.Event)
			if !ok1 || !ok2 || o.ResourceVersion == n.ResourceVersion {
				return
			}
			c.observe(n, max(occurrences(n)-occurrences(o), 1))
		},
	}); err != nil {
		return err
	}
	go inf.Run(ctx.Done())
	t := time.NewTicker(c.opts.Flush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-c.wake:
		}
		c.flush()
	}
}

// slim strips an Event to what observe reads.
func slim(obj any) (any, error) {
	ev, ok := obj.(*corev1.Event)
	if !ok {
		return obj, nil
	}
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: ev.Namespace, Name: ev.Name, ResourceVersion: ev.ResourceVersion,
			CreationTimestamp: ev.CreationTimestamp},
		InvolvedObject: corev1.ObjectReference{Kind: ev.InvolvedObject.Kind, Namespace: ev.InvolvedObject.Namespace, Name: ev.InvolvedObject.Name},
		Reason:         ev.Reason, Message: cut(ev.Message, channelpb.MaxEventMessage), Type: ev.Type, Count: ev.Count, Series: ev.Series,
		FirstTimestamp: ev.FirstTimestamp, LastTimestamp: ev.LastTimestamp, EventTime: ev.EventTime,
	}, nil
}

// occurrences is how often an Event says it happened.
func occurrences(ev *corev1.Event) int64 {
	n := int64(ev.Count)
	if ev.Series != nil && int64(ev.Series.Count) > n {
		n = int64(ev.Series.Count)
	}
	return max(n, 1)
}

// observe folds n occurrences of ev into what is pending, when a GitSync
// manages its object.
func (c *Collector) observe(ev *corev1.Event, n int64) {
	if ev.Type != corev1.EventTypeWarning {
		return
	}
	obj := ev.InvolvedObject
	gsNS, gsName, ok := c.opts.Owners.OwnerOf(obj.Kind, obj.Namespace, obj.Name)
	if !ok {
		return
	}
	k := key{gsNamespace: gsNS, gsName: gsName, kind: cut(obj.Kind, channelpb.MaxNameLength),
		namespace: cut(obj.Namespace, channelpb.MaxNameLength), name: cut(obj.Name, channelpb.MaxNameLength),
		reason: cut(ev.Reason, channelpb.MaxNameLength), message: cut(ev.Message, channelpb.MaxEventMessage)}
	at := eventTime(ev).UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Seen += n
	c.counts[gitsync{gsNS, gsName}] += n
	if p := c.pending[k]; p != nil {
		p.Count += n
		p.FirstUnixMs = min(p.FirstUnixMs, at)
		p.LastUnixMs = max(p.LastUnixMs, at)
		return
	}
	if len(c.pending) >= c.opts.MaxPending {
		c.stats.Dropped++
		return
	}
	c.pending[k] = &channelpb.WarningEvent{GitsyncNamespace: gsNS, GitsyncName: gsName, Kind: k.kind, Namespace: k.namespace,
		Name: k.name, Reason: k.reason, Message: k.message, Count: n, FirstUnixMs: at, LastUnixMs: at}
	c.order = append(c.order, k)
}

// eventTime is when the event last happened, by whichever clock field the
// reporter filled in.
func eventTime(ev *corev1.Event) time.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		return ev.Series.LastObservedTime.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp.Time
	}
	return ev.CreationTimestamp.Time
}

// cut shortens s to at most n bytes, dropping a rune cut in half.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// flush sends the oldest pending events the rate allows, in one batch.
func (c *Collector) flush() {
	c.mu.Lock()
	now := c.now()
	c.tokens = min(float64(c.opts.Burst), c.tokens+now.Sub(c.last).Seconds()*c.opts.Rate)
	c.last = now
	n := min(int(c.tokens), len(c.order), channelpb.MaxEventsPerBatch)
	if n == 0 {
		c.mu.Unlock()
		return
	}
	batch := &channelpb.WarningEvents{}
	for _, k := range c.order[:n] {
		batch.Events = append(batch.Events, proto.CloneOf(c.pending[k]))
	}
	c.mu.Unlock()
	// Sent outside the lock (copies), so events keep folding meanwhile;
	// what folded in during the send stays pending.
	if !c.opts.Sender.SendEvents(batch) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := c.order[n:]
	for i, k := range c.order[:n] {
		p := c.pending[k]
		if p.Count > batch.Events[i].Count {
			p.Count -= batch.Events[i].Count
			keep = append(keep, k)
			continue
		}
		delete(c.pending, k)
	}
	c.order = append(c.order[:0:0], keep...)
	c.tokens -= float64(n)
	c.stats.Sent += int64(n)
}
