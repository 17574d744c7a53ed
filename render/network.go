package render

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
)

// Kustomize (api v0.21.2) reads every http(s) path it meets — a resource, a
// patch, a generator's file, a transformer's path, an openapi schema, a
// value a transformer computed — with a zero http.Client of its own, which
// sends through http.DefaultTransport; it offers no option to give it
// another client, or a loader of ours. So the refusal is installed there:
// at init, http.DefaultTransport's Proxy function is wrapped so that a
// request made on a goroutine that is running a kustomize build fails
// before any connection is made (net/http asks Proxy first, on the calling
// goroutine). Every other request in the process (go-git's and
// client-go's go through http.DefaultTransport too) goes on as before, for
// the price of one atomic load while no build runs, and of reading its
// goroutine's id while one does. The in-place change keeps the type:
// k8s.io/apimachinery asserts http.DefaultTransport to *http.Transport.
// One way around Proxy exists: an alternative round tripper registered for
// "https" on http.DefaultTransport (golang.org/x/net/http2's
// ConfigureTransport does that) serves requests on connections it already
// has; nothing tether links does that to http.DefaultTransport (client-go
// does it to transports of its own).
//
// Plain URL reads are refused in every build, even with remote bases
// allowed: those allow git clones, which kustomize makes in a `git`
// process, not through this client.

// networkError is what kustomize gets instead of a connection.
type networkError struct {
	url string // without user information
}

func (e *networkError) Error() string {
	return fmt.Sprintf("kustomize tried to fetch %s: render never fetches files by URL (spec.allowRemoteBases allows https git bases only)", e.url)
}

var guard struct {
	mu     sync.Mutex
	builds map[uint64]*rootFS // by goroutine id
	n      atomic.Int32       // len(builds), read without mu
	// transport is http.DefaultTransport as the guard left it at init;
	// builds refuse to run if it has been replaced since.
	transport http.RoundTripper
}

func init() {
	guard.builds = map[uint64]*rootFS{}
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		// Changed in place, not wrapped: code that type-asserts
		// http.DefaultTransport to *http.Transport keeps working.
		next := t.Proxy
		t.Proxy = func(r *http.Request) (*url.URL, error) {
			if err := refuseRequest(r); err != nil {
				return nil, err
			}
			if next == nil {
				return nil, nil
			}
			return next(r)
		}
		guard.transport = t
		return
	}
	guard.transport = &guardTransport{next: http.DefaultTransport}
	http.DefaultTransport = guard.transport
}

// guardTransport guards an http.DefaultTransport that some package replaced
// before ours was initialised.
type guardTransport struct{ next http.RoundTripper }

func (g *guardTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := refuseRequest(r); err != nil {
		return nil, err
	}
	return g.next.RoundTrip(r)
}

// errNoGuard is a programming error in the binary, not a user error.
var errNoGuard = errors.New("render: http.DefaultTransport was replaced after start-up, so render cannot keep kustomize off the network; refusing to build")

// guardNetwork refuses every HTTP request kustomize makes on the calling
// goroutine until release is called, recording it in f.
func guardNetwork(f *rootFS) (release func(), err error) {
	if http.DefaultTransport != guard.transport {
		return nil, errNoGuard
	}
	id := goroutineID()
	guard.mu.Lock()
	guard.builds[id] = f
	guard.n.Add(1)
	guard.mu.Unlock()
	return func() {
		guard.mu.Lock()
		delete(guard.builds, id)
		guard.n.Add(-1)
		guard.mu.Unlock()
	}, nil
}

// refuseRequest returns an error when r is made by a kustomize build.
func refuseRequest(r *http.Request) error {
	if guard.n.Load() == 0 {
		return nil
	}
	id := goroutineID()
	guard.mu.Lock()
	f := guard.builds[id]
	guard.mu.Unlock()
	if f == nil {
		return nil
	}
	u := *r.URL
	allowed := f.allowedGET[u.String()]
	u.User = nil
	err := &networkError{url: u.String()}
	if !allowed {
		f.refuse(err)
	}
	return err
}

// goroutineID returns the id of the calling goroutine. Go offers no API for
// it on purpose; the first line of runtime.Stack ("goroutine 42
// [running]:") carries it, and is only parsed while some build runs. Ids
// are never reused, so a stale entry cannot catch another goroutine.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}
