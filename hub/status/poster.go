package status

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"tether.dev/tether/hub/store"
)

// Outbox is where commit statuses wait to be posted, one per commit and
// context with the latest state wanted: the hub's store (table
// status_outbox). Whichever hub stores a report queues the status it
// implies there; the Poster of the hub that leads claims, posts and
// finishes them.
type Outbox interface {
	ClaimStatuses(ctx context.Context, holder string, stale time.Duration, limit int) ([]store.QueuedStatus, error)
	StatusPosted(ctx context.Context, holder string, q store.QueuedStatus) error
	RetryStatus(ctx context.Context, holder string, q store.QueuedStatus, at time.Time, unsure bool) error
	DropStatus(ctx context.Context, holder string, q store.QueuedStatus) error
}

// Options tune a Poster; zero values take the defaults.
type Options struct {
	Client *http.Client // default: 30 s timeout
	Log    *slog.Logger
	// Holder names this hub on the rows it claims; unique per process.
	Holder string
	// Leading says whether this hub leads and so may post; nil: always.
	Leading  func() bool
	Workers  int           // posts at once; default 4
	Attempts int           // failed posts before a status is dropped; default 8
	Backoff  time.Duration // first retry delay, doubling; default 1s
	// MaxBackoff bounds the delay between retries; default 5 min.
	MaxBackoff time.Duration
	// Poll is how often the outbox is read without a Wake; default 2 s.
	Poll time.Duration
	// Result, when set, is told the outcome of each post: "posted",
	// "unchanged" (the Git host had the state already: a leader posted
	// it and died before recording it), "retried" (a transient failure;
	// it is tried again later) or "failed" (refused for good, or out of
	// attempts: dropped).
	Result func(host Host, result string)
}

// Poster posts the commit statuses of an Outbox while its hub leads.
type Poster struct {
	hosts []Host
	box   Outbox
	opt   Options
	// claimFor is how long a claim holds: one post's timeout and a
	// margin. An older claim is a dead (or cut off) leader's.
	claimFor time.Duration
	wake     chan struct{}
	// retryAt is the soonest retry this poster scheduled, if sooner than
	// its next poll.
	mu      sync.Mutex
	retryAt time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// claimMargin is how much longer a claim lasts than the post it covers.
const claimMargin = 10 * time.Second

// NewPoster starts a Poster reading box; Close stops it.
func NewPoster(hosts []Host, box Outbox, opt Options) *Poster {
	if opt.Client == nil {
		opt.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.Leading == nil {
		opt.Leading = func() bool { return true }
	}
	if opt.Workers <= 0 {
		opt.Workers = 4
	}
	if opt.Attempts <= 0 {
		opt.Attempts = 8
	}
	if opt.Backoff <= 0 {
		opt.Backoff = time.Second
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 5 * time.Minute
	}
	if opt.Poll <= 0 {
		opt.Poll = 2 * time.Second
	}
	postFor := opt.Client.Timeout
	if postFor <= 0 {
		postFor = time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Poster{hosts: hosts, box: box, opt: opt, claimFor: postFor + claimMargin,
		wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
	if len(hosts) > 0 {
		p.wg.Add(1)
		go p.loop()
	}
	return p
}

// Close stops the Poster; a post under way is cut short and its status
// stays in the outbox for the next leader.
func (p *Poster) Close() {
	p.cancel()
	p.wg.Wait()
}

// Serves reports whether a configured host serves repoURL: only such
// statuses are worth queueing.
func (p *Poster) Serves(repoURL string) bool {
	_, _, ok := p.host(repoURL)
	return ok
}

func (p *Poster) host(repoURL string) (Host, string, bool) {
	for _, h := range p.hosts {
		if project, ok := h.project(repoURL); ok {
			return h, project, true
		}
	}
	return Host{}, "", false
}

// Wake makes the Poster read the outbox now rather than at its next
// poll: a status was queued, or this hub became the leader. It never
// blocks.
func (p *Poster) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Poster) result(h Host, r string) {
	if p.opt.Result != nil {
		p.opt.Result(h, r)
	}
}

func (p *Poster) loop() {
	defer p.wg.Done()
	t := time.NewTicker(p.opt.Poll)
	defer t.Stop()
	for {
		p.mu.Lock()
		if !p.retryAt.After(time.Now()) {
			p.retryAt = time.Time{} // due: this drain takes it
		}
		p.mu.Unlock()
		p.drain()
		p.mu.Lock()
		retryAt := p.retryAt
		p.mu.Unlock()
		var soon <-chan time.Time
		if retry := time.Until(retryAt); !retryAt.IsZero() && retry < p.opt.Poll {
			soon = time.After(max(retry, time.Millisecond))
		}
		select {
		case <-p.ctx.Done():
			return
		case <-p.wake:
		case <-t.C:
		case <-soon:
		}
	}
}

// drain claims and posts what is due, a batch at a time, while this hub
// leads.
func (p *Poster) drain() {
	for p.ctx.Err() == nil && p.opt.Leading() {
		qs, err := p.box.ClaimStatuses(p.ctx, p.opt.Holder, p.claimFor, 4*p.opt.Workers)
		if err != nil {
			if p.ctx.Err() == nil {
				p.opt.Log.Error("commit statuses: reading the outbox", "error", err)
			}
			return
		}
		if len(qs) == 0 {
			return
		}
		sem := make(chan struct{}, p.opt.Workers)
		var wg sync.WaitGroup
		for _, q := range qs {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				p.handle(q)
			}()
		}
		wg.Wait()
	}
}

// handle posts one claimed status and finishes its row: recorded and
// deleted once posted, dropped when refused for good or out of attempts,
// released for a retry with backoff otherwise.
func (p *Poster) handle(q store.QueuedStatus) {
	s := Status{RepoURL: q.RepoURL, SHA: q.SHA, State: State(q.State), Context: q.Context,
		TargetURL: q.TargetURL, Description: q.Description}
	h, project, ok := p.host(q.RepoURL)
	log := p.opt.Log.With("sha", q.SHA, "context", q.Context, "state", q.State)
	// The rows are this hub's now; finishing them must outlive a Close.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(p.ctx), 10*time.Second)
	defer fcancel()
	if !ok {
		log.Warn("commit status dropped: no configured Git host serves its repository", "repo", q.RepoURL)
		if err := p.box.DropStatus(fctx, p.opt.Holder, q); err != nil {
			log.Error("commit status: dropping", "error", err)
		}
		p.result(Host{}, "failed")
		return
	}
	log = log.With("host", h.String(), "project", project)
	ctx, cancel := context.WithTimeout(p.ctx, p.claimFor-claimMargin)
	defer cancel()
	if q.ClaimedBy != "" {
		// Another leader (or this one, unsure) claimed it and did not
		// finish: it may have posted it. Ask the host before posting.
		has, err := hasState(ctx, p.opt.Client, h, project, s)
		if err != nil {
			p.retry(fctx, log, h, q, err)
			return
		}
		if has {
			if err := p.box.StatusPosted(fctx, p.opt.Holder, q); err != nil {
				log.Error("commit status on the Git host but not recorded", "error", err)
			}
			log.Info("commit status already on the Git host: a leader posted it and did not record it", "claimedBy", q.ClaimedBy)
			p.result(h, "unchanged")
			return
		}
	}
	err := post(ctx, p.opt.Client, h, project, s)
	var perm errPermanent
	switch {
	case err == nil:
		if err := p.box.StatusPosted(fctx, p.opt.Holder, q); err != nil {
			log.Error("commit status posted but not recorded", "error", err)
		}
		log.Info("commit status posted")
		p.result(h, "posted")
	case errors.As(err, &perm) || q.Attempts+1 >= p.opt.Attempts:
		log.Error("commit status not posted; dropped", "attempts", q.Attempts+1, "error", err)
		if err := p.box.DropStatus(fctx, p.opt.Holder, q); err != nil {
			log.Error("commit status: dropping", "error", err)
		}
		p.result(h, "failed")
	default:
		p.retry(fctx, log, h, q, err)
	}
}

// retry releases q for another attempt after a backoff that doubles with
// each failed one (with jitter). The host may have taken the failed post
// all the same (a timeout, a 502 from a proxy), so the row stays marked
// unsure and the next attempt asks the host first.
func (p *Poster) retry(ctx context.Context, log *slog.Logger, h Host, q store.QueuedStatus, cause error) {
	d := p.opt.Backoff
	for range q.Attempts {
		if d >= p.opt.MaxBackoff {
			break
		}
		d *= 2
	}
	d = min(d, p.opt.MaxBackoff)
	wait := d/2 + rand.N(d)
	log.Info("commit status post failed; retrying", "attempt", q.Attempts+1, "in", wait.Round(time.Millisecond), "error", cause)
	at := time.Now().Add(wait)
	if err := p.box.RetryStatus(ctx, p.opt.Holder, q, at, true); err != nil {
		log.Error("commit status: scheduling the retry", "error", err)
	}
	p.mu.Lock()
	if p.retryAt.IsZero() || at.Before(p.retryAt) {
		p.retryAt = at
	}
	p.mu.Unlock()
	p.result(h, "retried")
}
