package agent

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"tether.dev/tether/channel/channelpb"
)

// Client is the agent's end of the channel. It takes the reports the sync
// loop builds (Send implements sync.ReportSink) and never reads the
// GitSync itself.
type Client struct {
	opts    Options
	log     *slog.Logger
	target  target
	creds   *tokenCreds
	ws      *http.Client
	buf     *buffer
	int63n  func(int64) int64
	running atomic.Bool
	up      atomic.Bool
	session atomic.Uint64
	sources sources
	// hubEvents: the current stream's hub listed FEATURE_EVENTS.
	hubEvents atomic.Bool
	eventq    chan *channelpb.WarningEvents
	warnings  atomic.Pointer[WarningCounter]
}

// New checks the options and returns a Client; nothing is dialled until
// Run.
func New(opts Options) (*Client, error) {
	if opts.AgentName == "" {
		return nil, errors.New("agent channel: agent name is empty")
	}
	if opts.Token == "" && opts.TokenFile == "" {
		return nil, errors.New("agent channel: a token or token file is required")
	}
	t, err := parseTarget(opts)
	if err != nil {
		return nil, err
	}
	opts.Backoff = opts.Backoff.withDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Client{
		opts:    opts,
		log:     log.With("hub", opts.HubURL, "agent", opts.AgentName),
		target:  t,
		creds:   &tokenCreds{token: opts.Token, file: opts.TokenFile, requireTLS: t.kind == grpcTLS},
		buf:     newBuffer(time.Now),
		int63n:  rand.Int64N,
		sources: sources{m: map[string]map[string]bool{}},
		eventq:  make(chan *channelpb.WarningEvents, 1),
	}
	if t.kind == webSocket {
		c.ws = webSocketClient(t)
	}
	return c, nil
}

// WarningCounter says how many Warning events of a GitSync's objects the
// agent has seen; channel/events' Collector implements it.
type WarningCounter interface {
	Count(namespace, name string) int64
}

// CountWarnings makes every report from now on carry w's count of the
// GitSync's Warning events.
func (c *Client) CountWarnings(w WarningCounter) { c.warnings.Store(&w) }

// SendEvents hands a batch of Warning events to the stream. It never
// blocks: it returns false when there is no stream, the hub does not take
// events (an older hub), or the previous batch is still queued; the
// caller offers it again later.
func (c *Client) SendEvents(b *channelpb.WarningEvents) bool {
	if !c.up.Load() || !c.hubEvents.Load() {
		return false
	}
	select {
	case c.eventq <- b:
		return true
	default:
		return false
	}
}

// Connected reports whether the hub has welcomed the current stream.
func (c *Client) Connected() bool { return c.up.Load() }

// Pending is the number of reports the hub has not acknowledged yet.
func (c *Client) Pending() int { return c.buf.len() }

// Run keeps one stream to the hub open until ctx ends, reconnecting with
// backoff; it returns nil then. Reports made while the hub is away wait in
// the buffer. Run must not be called twice at the same time.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("agent channel: Run is already running")
	}
	defer c.running.Store(false)
	attempt := 0
	for {
		welcomed, err := c.connect(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if welcomed && status.Code(err) != codes.Aborted {
			attempt = 0
		}
		delay := c.opts.Backoff.Delay(attempt, c.int63n)
		attempt = min(attempt+1, 64)
		c.logDrop(err, welcomed, delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// logDrop says, in one line, why the stream ended and when the next try
// is. The hub's messages never contain the token, and neither do ours.
func (c *Client) logDrop(err error, welcomed bool, delay time.Duration) {
	attrs := []any{"retryIn", delay.Round(time.Millisecond), "error", err}
	switch status.Code(err) {
	case codes.Unauthenticated:
		c.log.Error("hub refused the agent's token (wrong, expired or revoked); check the token file", attrs...)
	case codes.PermissionDenied:
		c.log.Error("hub refused the agent: the token was issued for another agent name", attrs...)
	case codes.InvalidArgument:
		c.log.Error("hub rejected a message from this agent", attrs...)
	case codes.Aborted:
		c.log.Warn("hub replaced this stream with a newer one for the same agent name; is another agent using this name?", attrs...)
	default:
		if welcomed {
			c.log.Warn("lost the channel to the hub; reconnecting", attrs...)
		} else {
			c.log.Warn("cannot reach the hub; retrying", attrs...)
		}
	}
}
