package render

import (
	"container/list"
	"context"
	"encoding/json"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/singleflight"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TreeHasher tells the Git tree hash of a folder (slash-separated, relative
// to the repository root; "." is the root) of a checkout. source.Fetcher
// is one: the hash costs it no network.
type TreeHasher interface {
	TreeHash(root, path string) (string, error)
}

// CacheOptions bound a Cache. The zero value is usable.
type CacheOptions struct {
	// MaxEntries caps the renders kept; default DefaultCacheEntries.
	MaxEntries int
	// MaxBytes caps the bytes of the objects kept (as JSON); a render
	// larger than this is never kept. Default DefaultCacheBytes.
	MaxBytes int64
}

// Defaults of CacheOptions.
const (
	DefaultCacheEntries = 512
	DefaultCacheBytes   = 256 << 20
)

// CacheStats counts what a Cache did.
type CacheStats struct {
	Hits     int64 // answered from the cache
	Renders  int64 // renders run (a miss shared by concurrent callers is one)
	Uncached int64 // renders the cache could not key (no tree hash, remote bases)
	Entries  int   // renders kept now
	Bytes    int64 // their bytes
}

// Cache renders like Render, and remembers successful renders by what
// decides them: the Git tree hash of the folder holding everything the
// render read, that folder, spec.path and the options. So a commit that
// does not touch the rendered folder (or, for an overlay, the folder
// holding it and its bases) costs no render, and any number of GitSyncs
// rendering the same folder of the same repository share one render, even
// at different commits or with different credentials: equal tree hashes
// are equal content, which each caller's checkout already holds.
//
// The scope of a render is learnt by rendering: it starts as spec.path and
// widens to the deepest folder holding every path the render looked at (an
// overlay's ../../base widens it to their common parent). A folder that
// does not exist at the revision, a root that is not a checkout of the
// TreeHasher, and renders with remote bases (whose result depends on the
// network, not on the tree) are rendered every time. Failed renders are
// not kept; concurrent identical renders run once (singleflight).
//
// Every caller gets its own deep copy of the objects, so a caller may change
// them without touching the cache or other callers. A Cache is safe for
// concurrent use; one per process serves every GitSync.
type Cache struct {
	trees TreeHasher
	opts  CacheOptions

	flight                  singleflight.Group
	hits, renders, uncached atomic.Int64

	mu      sync.Mutex
	entries map[cacheKey]*list.Element // of *cacheEntry
	lru     *list.List                 // most recently used first
	bytes   int64
	scopes  map[string]string // what a render of this spec.path and options read: its scope
}

type cacheKey struct {
	spec  string // spec.path and options, see specKey
	scope string // folder relative to the root, slash-separated
	tree  string // its Git tree hash
}

type cacheEntry struct {
	key cacheKey
	res *Result
}

// NewCache returns a Cache that asks trees for tree hashes.
func NewCache(trees TreeHasher, opts CacheOptions) *Cache {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultCacheEntries
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultCacheBytes
	}
	return &Cache{
		trees:   trees,
		opts:    opts,
		entries: map[cacheKey]*list.Element{},
		lru:     list.New(),
		scopes:  map[string]string{},
	}
}

// Render returns what Render(ctx, opts) returns, from the cache when it
// can. The result's objects are the caller's own.
func (c *Cache) Render(ctx context.Context, opts Options) (*Result, error) {
	spec, ok := specKey(opts)
	if !ok {
		c.uncached.Add(1)
		return Render(ctx, opts)
	}
	c.mu.Lock()
	scope, ok := c.scopes[spec]
	c.mu.Unlock()
	if !ok {
		scope = cleanPath(opts.Path)
	}
	tree, err := c.trees.TreeHash(opts.Root, scope)
	if err != nil {
		c.uncached.Add(1)
		return Render(ctx, opts)
	}
	key := cacheKey{spec: spec, scope: scope, tree: tree}
	if res := c.get(key); res != nil {
		c.hits.Add(1)
		return copyResult(res), nil
	}
	// The render goes on for the callers that share it if this one's ctx
	// ends; kustomize could not be interrupted anyway.
	ch := c.flight.DoChan(key.spec+"\x00"+key.scope+"\x00"+key.tree, func() (any, error) {
		if res := c.get(key); res != nil {
			c.hits.Add(1)
			return res, nil
		}
		c.renders.Add(1)
		res, err := Render(context.WithoutCancel(ctx), opts)
		if err != nil {
			return nil, err
		}
		c.keep(key, opts.Root, res)
		return res, nil
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return copyResult(r.Val.(*Result)), nil
	}
}

// Stats returns what the cache did so far.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{
		Hits: c.hits.Load(), Renders: c.renders.Load(), Uncached: c.uncached.Load(),
		Entries: c.lru.Len(), Bytes: c.bytes,
	}
}

// keep stores res, rendered under key. When the render read outside the
// folder key names (an overlay's bases), it is stored under its own scope
// instead, and later renders of the same spec start from that scope.
func (c *Cache) keep(key cacheKey, root string, res *Result) {
	if res.size > c.opts.MaxBytes {
		return
	}
	if !withinSlash(key.scope, res.scope) {
		tree, err := c.trees.TreeHash(root, res.scope)
		if err != nil {
			return
		}
		key.scope, key.tree = res.scope, tree
		c.mu.Lock()
		if len(c.scopes) >= 4*c.opts.MaxEntries {
			clear(c.scopes) // forgetting a scope costs one render
		}
		c.scopes[key.spec] = res.scope
		c.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.lru.MoveToFront(el)
		return
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, res: res})
	c.bytes += res.size
	for c.lru.Len() > c.opts.MaxEntries || c.bytes > c.opts.MaxBytes {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.entries, e.key)
		c.bytes -= e.res.size
	}
}

// get returns the render kept under key, or nil.
func (c *Cache) get(key cacheKey) *Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cacheEntry).res
}

// copyResult returns res with objects of the caller's own.
func copyResult(res *Result) *Result {
	out := *res
	out.Objects = make([]*unstructured.Unstructured, len(res.Objects))
	for i, o := range res.Objects {
		out.Objects[i] = o.DeepCopy()
	}
	return &out
}

// specKey returns the part of a cache key that opts decide: spec.path and
// every option but Root. Renders with remote bases are not cached: the
// network, not the tree, decides them.
func specKey(opts Options) (string, bool) {
	if opts.AllowRemoteBases {
		return "", false
	}
	lim := opts.limits()
	b, err := json.Marshal(struct {
		Path       string
		Substitute map[string]string // nil and empty differ, and json tells them apart
		File       int64
		Total      int64
		Objects    int
	}{cleanPath(opts.Path), opts.Substitute, lim.file, lim.total, lim.objects})
	if err != nil {
		return "", false
	}
	return string(b), true
}

// cleanPath is spec.path as a clean slash path, "." for the root.
func cleanPath(p string) string {
	return path.Clean(filepath.ToSlash(p))
}

// withinSlash reports whether the slash path p is dir or below it.
func withinSlash(dir, p string) bool {
	return dir == "." || p == dir || strings.HasPrefix(p, dir+"/")
}
