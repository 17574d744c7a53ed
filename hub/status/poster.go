package status

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Recorder remembers the state last posted per commit and context (the
// hub's store implements it).
type Recorder interface {
	PostedStatus(ctx context.Context, sha, context string) (string, error)
	RecordPostedStatus(ctx context.Context, sha, context, state string) error
}

// Options tune a Poster; zero values take the defaults.
type Options struct {
	Client   *http.Client
	Log      *slog.Logger
	Workers  int           // default 4
	Queue    int           // pending commit+context pairs; default 1024
	Attempts int           // tries per status; default 6
	Backoff  time.Duration // first retry delay, doubling; default 1s
	// Result, when set, is told the outcome of each status: "posted",
	// "unchanged" (already posted), "failed" or "dropped" (queue full).
	Result func(host Host, result string)
}

// Poster posts commit statuses in the background.
type Poster struct {
	hosts []Host
	rec   Recorder
	opt   Options

	mu       sync.Mutex
	pending  map[key]job
	inflight map[key]bool
	queue    chan key

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type key struct{ sha, context string }

type job struct {
	host    Host
	project string
	status  Status
}

// NewPoster starts a Poster's workers; Close stops them.
func NewPoster(hosts []Host, rec Recorder, opt Options) *Poster {
	if opt.Client == nil {
		opt.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.Workers <= 0 {
		opt.Workers = 4
	}
	if opt.Queue <= 0 {
		opt.Queue = 1024
	}
	if opt.Attempts <= 0 {
		opt.Attempts = 6
	}
	if opt.Backoff <= 0 {
		opt.Backoff = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Poster{
		hosts: hosts, rec: rec, opt: opt,
		pending:  map[key]job{},
		inflight: map[key]bool{},
		queue:    make(chan key, opt.Queue),
		ctx:      ctx, cancel: cancel,
	}
	for range opt.Workers {
		p.wg.Add(1)
		go p.work()
	}
	return p
}

// Close stops the workers; statuses still queued are not posted.
func (p *Poster) Close() {
	p.cancel()
	p.wg.Wait()
}

// Serves reports whether a configured host serves repoURL.
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

// Enqueue schedules s and returns at once; false when no configured host
// serves s.RepoURL. When a status for the same commit and context is
// still waiting, s replaces it: the latest state wins.
func (p *Poster) Enqueue(s Status) bool {
	h, project, ok := p.host(s.RepoURL)
	if !ok || s.SHA == "" {
		return false
	}
	k := key{s.SHA, s.Context}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, waiting := p.pending[k]
	p.pending[k] = job{host: h, project: project, status: s}
	if waiting || p.inflight[k] {
		return true // the queue already holds k, or its worker re-queues it
	}
	select {
	case p.queue <- k:
	default:
		delete(p.pending, k)
		p.opt.Log.Error("commit status queue full; status dropped", "sha", s.SHA, "context", s.Context, "state", s.State)
		p.result(h, "dropped")
	}
	return true
}

func (p *Poster) result(h Host, r string) {
	if p.opt.Result != nil {
		p.opt.Result(h, r)
	}
}

func (p *Poster) work() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case k := <-p.queue:
			p.mu.Lock()
			j, ok := p.pending[k]
			delete(p.pending, k)
			if ok {
				p.inflight[k] = true
			}
			p.mu.Unlock()
			if !ok {
				continue
			}
			p.run(j)
			p.mu.Lock()
			delete(p.inflight, k)
			if _, again := p.pending[k]; again {
				select {
				case p.queue <- k:
				default:
					delete(p.pending, k)
					p.result(j.host, "dropped")
				}
			}
			p.mu.Unlock()
		}
	}
}

// run posts one status unless it was posted already, retrying transient
// failures with exponential backoff and jitter.
func (p *Poster) run(j job) {
	s := j.status
	log := p.opt.Log.With("host", j.host.String(), "project", j.project, "sha", s.SHA, "context", s.Context, "state", s.State)
	last, err := p.rec.PostedStatus(p.ctx, s.SHA, s.Context)
	if err != nil {
		log.Error("commit status: reading the last posted state", "error", err)
	}
	if last == string(s.State) {
		p.result(j.host, "unchanged")
		return
	}
	delay := p.opt.Backoff
	for attempt := 1; ; attempt++ {
		err = post(p.ctx, p.opt.Client, j.host, j.project, s)
		if err == nil {
			break
		}
		var perm errPermanent
		if errors.As(err, &perm) || attempt >= p.opt.Attempts || p.ctx.Err() != nil {
			log.Error("commit status not posted", "attempts", attempt, "error", err)
			p.result(j.host, "failed")
			return
		}
		log.Info("commit status post failed; retrying", "attempt", attempt, "error", err)
		wait := delay/2 + rand.N(delay)
		select {
		case <-time.After(wait):
		case <-p.ctx.Done():
			p.result(j.host, "failed")
			return
		}
		delay *= 2
	}
	if err := p.rec.RecordPostedStatus(p.ctx, s.SHA, s.Context, string(s.State)); err != nil {
		log.Error("commit status posted but not recorded", "error", err)
	}
	log.Info("commit status posted")
	p.result(j.host, "posted")
}
