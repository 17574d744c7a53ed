package source

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/sync/singleflight"
)

// Options tune a Fetcher. The zero value is usable.
type Options struct {
	// ResolveTTL is how long a ref listing of one URL (with the same
	// credentials) is reused. The sync loop passes its interval, so every
	// GitSync that shares a URL causes one listing per interval. Zero means
	// every Resolve lists (concurrent identical calls still share one).
	ResolveTTL time.Duration
	// Timeout bounds each network operation (listing or fetch). Default 60s.
	Timeout time.Duration
	// KeepRevisions is how many checkouts to keep per repository. Default 3.
	KeepRevisions int
	// Logger receives one line per listing, fetch and checkout. Default
	// slog.Default().
	Logger *slog.Logger

	// MaxFileSize caps one file of a checkout, in bytes; it is checked
	// from the object's header, before the file is read. Default
	// DefaultMaxFileSize.
	MaxFileSize int64
	// MaxCheckoutSize caps the sum of the file sizes of one checkout, in
	// bytes. Default DefaultMaxCheckoutSize.
	MaxCheckoutSize int64
	// MaxFiles caps the entries (files, links, directories) of one
	// checkout. Default DefaultMaxFiles.
	MaxFiles int
}

// Defaults of the checkout limits in Options. A commit over a limit is
// refused with ErrTooLarge and nothing of it is written.
const (
	DefaultMaxFileSize     int64 = 64 << 20
	DefaultMaxCheckoutSize int64 = 512 << 20
	DefaultMaxFiles              = 100_000
)

// accessProofAge is how old a listing made with the caller's credentials
// may be and still prove, before Checkout serves a cached tree, that the
// caller may read the repository (when ResolveTTL is shorter). It lets the
// Checkout that follows a Resolve use that Resolve's listing.
const accessProofAge = time.Minute

// Stats counts the network operations a Fetcher actually made.
type Stats struct {
	// Listings counts ls-remote round trips (cache misses of Resolve).
	Listings int64
	// Fetches counts fetches of objects.
	Fetches int64
	// Checkouts counts trees written to disk.
	Checkouts int64
}

// inUseGrace protects a checkout handed out this recently from pruning: a
// sync may still be rendering it.
const inUseGrace = 10 * time.Minute

// Fetcher resolves refs and checks out revisions into cacheDir. It is safe
// for concurrent use; one Fetcher should serve the whole process so that
// identical requests share work. Work is shared only between callers that
// present the same credentials for the same repository, and every call
// proves with a listing that its caller may read the repository before
// anything cached is handed out.
type Fetcher struct {
	cacheDir string
	opts     Options
	log      *slog.Logger
	now      func() time.Time
	grace    time.Duration

	keyOnce sync.Once
	key     []byte // HMAC key of credential identities, see hashKey

	listings, fetches, checkouts atomic.Int64
	// treeLooks counts TreeHash's looks into the object store.
	treeLooks atomic.Int64

	resolveFlight  flight[[]*plumbing.Reference]
	checkoutFlight flight[string]
	treeFlight     flight[string]

	mu       sync.Mutex
	listed   map[string]listing     // key: repoKey.listing()
	repoLock map[string]*sync.Mutex // key: cache folder of a repoKey
	trees    map[string]string      // TreeHash's answers, key: checkout dir + "\x00" + folder
	// forgotten counts the Forget calls of each normalised URL.
	forgotten map[string]uint64
}

type listing struct {
	refs []*plumbing.Reference
	at   time.Time
	gen  uint64 // the URL's Forget generation when it was made
}

// NewFetcher returns a Fetcher that keeps its bare repositories and
// checkouts under cacheDir.
func NewFetcher(cacheDir string, opts Options) *Fetcher {
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.KeepRevisions <= 0 {
		opts.KeepRevisions = 3
	}
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	if opts.MaxCheckoutSize <= 0 {
		opts.MaxCheckoutSize = DefaultMaxCheckoutSize
	}
	if opts.MaxFiles <= 0 {
		opts.MaxFiles = DefaultMaxFiles
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	// Checkouts are handed out by path; keep them absolute so that callers
	// never depend on the working directory.
	if abs, err := filepath.Abs(cacheDir); err == nil {
		cacheDir = abs
	}
	return &Fetcher{
		cacheDir: cacheDir,
		opts:     opts,
		log:      log.With("component", "source"),
		now:      time.Now,
		grace:    inUseGrace,
		listed:   map[string]listing{},
		repoLock: map[string]*sync.Mutex{},
		trees:    map[string]string{},

		forgotten: map[string]uint64{},
	}
}

// Stats returns the counts of network operations so far.
func (f *Fetcher) Stats() Stats {
	return Stats{Listings: f.listings.Load(), Fetches: f.fetches.Load(), Checkouts: f.checkouts.Load()}
}

// Forget drops cached listings of url, under any spelling and for every
// caller's credentials, so the next Resolve asks the server (for a push
// webhook or a manual resync). A Resolve after Forget never shares a
// listing that began before it: that one may predate the push.
func (f *Fetcher) Forget(rawURL string) {
	ep, err := endpoint(rawURL)
	if err != nil {
		return // nothing can have been cached for it
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	u := normalizeURL(ep)
	f.forgotten[u]++
	prefix := u + "\x00"
	for k := range f.listed {
		if strings.HasPrefix(k, prefix) {
			delete(f.listed, k)
		}
	}
}

func (f *Fetcher) lockRepo(key string) func() {
	f.mu.Lock()
	l, ok := f.repoLock[key]
	if !ok {
		l = &sync.Mutex{}
		f.repoLock[key] = l
	}
	f.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// endpoint parses url and refuses local paths and unknown schemes: a
// GitSync must not read the agent's own file system.
func endpoint(rawURL string) (*transport.Endpoint, error) {
	ep, err := transport.NewEndpoint(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRef, RedactString(err.Error()))
	}
	switch ep.Protocol {
	case "http", "https", "ssh":
		return ep, nil
	}
	return nil, fmt.Errorf("%w: unsupported URL scheme %q (use https://, http:// or ssh://)", ErrInvalidRef, ep.Protocol)
}

// redactedEndpoint is the endpoint's URL without credentials, for logs.
func redactedEndpoint(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return RedactString(rawURL)
	}
	return RedactURL(u.String())
}

// flight collapses concurrent calls with the same key into one, with
// golang.org/x/sync/singleflight, typed.
type flight[T any] struct {
	g singleflight.Group
}

// do runs fn once for all callers that arrive while it runs. A caller whose
// ctx ends stops waiting; fn keeps running for the others.
func (f *flight[T]) do(ctx context.Context, key string, fn func() (T, error)) (T, error) {
	ch := f.g.DoChan(key, func() (any, error) { return fn() })
	select {
	case r := <-ch:
		if r.Err != nil {
			var zero T
			return zero, r.Err
		}
		return r.Val.(T), nil
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
