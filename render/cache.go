package render

import (
	"container/list"
	"context"
	"encoding/json"
	"fmt"
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
	// MaxBytes caps the bytes of the objects kept, as JSON (how the cache
	// holds them: about a tenth of the heap the decoded objects take); a
	// render larger than this is never kept. Default DefaultCacheBytes.
	MaxBytes int64
}

// Defaults of CacheOptions: enough entries that 1,000 GitSyncs rendering
// folders of their own each keep theirs (an LRU smaller than the working
// set misses every time), and the bytes bound what they weigh.
const (
	DefaultCacheEntries = 4096
	DefaultCacheBytes   = 64 << 20
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
// Renders are kept as JSON, and every caller gets objects decoded for it
// alone, so a caller may change them without touching the cache or other
// callers. A Cache is safe for concurrent use; one per process serves
// every GitSync.
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

// cacheEntry is a render as the cache keeps it: each object as JSON, a
// tenth of the memory of the object itself, and what every caller's copy
// is decoded from.
type cacheEntry struct {
	key     cacheKey
	hash    string
	objects [][]byte
	size    int64 // bytes of objects
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
	if e := c.get(key); e != nil {
		c.hits.Add(1)
		return e.result()
	}
	// The render goes on for the callers that share it if this one's ctx
	// ends; kustomize could not be interrupted anyway.
	ch := c.flight.DoChan(key.spec+"\x00"+key.scope+"\x00"+key.tree, func() (any, error) {
		if e := c.get(key); e != nil {
			c.hits.Add(1)
			return e, nil
		}
		c.renders.Add(1)
		res, err := Render(context.WithoutCancel(ctx), opts)
		if err != nil {
			return nil, err
		}
		e, err := encode(key, res)
		if err != nil {
			return nil, err
		}
		c.keep(e, opts.Root, res.scope)
		return e, nil
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*cacheEntry).result()
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

// keep stores e. When the render read outside the folder its key names
// (an overlay's bases), it is stored under its own scope instead, and later
// renders of the same spec start from that scope.
func (c *Cache) keep(e *cacheEntry, root, scope string) {
	if e.size > c.opts.MaxBytes {
		return
	}
	if !withinSlash(e.key.scope, scope) {
		tree, err := c.trees.TreeHash(root, scope)
		if err != nil {
			return
		}
		e.key.scope, e.key.tree = scope, tree
		c.mu.Lock()
		if len(c.scopes) >= 4*c.opts.MaxEntries {
			clear(c.scopes) // forgetting a scope costs one render
		}
		c.scopes[e.key.spec] = scope
		c.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[e.key]; ok {
		c.lru.MoveToFront(el)
		return
	}
	c.entries[e.key] = c.lru.PushFront(e)
	c.bytes += e.size
	for c.lru.Len() > c.opts.MaxEntries || c.bytes > c.opts.MaxBytes {
		el := c.lru.Back()
		old := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.entries, old.key)
		c.bytes -= old.size
	}
}

// get returns the entry kept under key, or nil.
func (c *Cache) get(key cacheKey) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cacheEntry)
}

// encode turns res into an entry for key. The JSON round trip changes
// nothing: every object already is what JSON decodes to (int64, float64,
// string, bool, nil, maps and slices), as render builds it.
func encode(key cacheKey, res *Result) (*cacheEntry, error) {
	e := &cacheEntry{key: key, hash: res.Hash, objects: make([][]byte, len(res.Objects))}
	for i, o := range res.Objects {
		b, err := o.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("render cache: %s: %w", objectID(o), err)
		}
		e.objects[i] = b
		e.size += int64(len(b))
	}
	return e, nil
}

// result decodes a Result of the caller's own.
func (e *cacheEntry) result() (*Result, error) {
	res := &Result{Hash: e.hash, Objects: make([]*unstructured.Unstructured, len(e.objects))}
	for i, b := range e.objects {
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("render cache: object %d: %w", i, err)
		}
		res.Objects[i] = o
	}
	return res, nil
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
