package render

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// contentHasher stands in for Git's tree hashes in unit tests: a hash of
// the names and contents of every file under the folder, read from disk.
// Folders of equal content have equal hashes, as in Git.
type contentHasher struct {
	calls atomic.Int64
	// gate, when set, is waited on by every call (see
	// TestCacheConcurrentRendersOnce).
	gate func()
}

func (h *contentHasher) TreeHash(root, p string) (string, error) {
	h.calls.Add(1)
	if h.gate != nil {
		h.gate()
	}
	dir := filepath.Join(root, filepath.FromSlash(p))
	if !within(root, dir) {
		return "", errors.New("outside the root")
	}
	sum := sha256.New()
	err := filepath.WalkDir(dir, func(q string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, q)
		data, err := os.ReadFile(q)
		sum.Write([]byte(rel + "\x00"))
		sum.Write(data)
		sum.Write([]byte{0})
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// TestCacheHitsAndMisses runs a sequence of renders through one Cache,
// each after a change to the tree or with other options, and checks
// whether each was served from the cache.
func TestCacheHitsAndMisses(t *testing.T) {
	root := t.TempDir()
	write(t, root, "apps/web/cm.yaml", configMap("web"))
	write(t, root, "apps/db/cm.yaml", configMap("db"))
	write(t, root, "apps/base/kustomization.yaml", "resources: [cm.yaml]\n")
	write(t, root, "apps/base/cm.yaml", configMap("base"))
	write(t, root, "apps/overlay/kustomization.yaml", "resources: [../base]\nnamePrefix: p-\n")
	write(t, root, "other/cm.yaml", configMap("other"))
	copyRoot := t.TempDir() // the same content at another checkout
	if err := os.CopyFS(copyRoot, os.DirFS(root)); err != nil {
		t.Fatal(err)
	}
	web := Options{Root: root, Path: "apps/web"}
	overlay := Options{Root: root, Path: "./apps/overlay/"}
	with := func(o Options, f func(*Options)) Options { f(&o); return o }

	h := &contentHasher{}
	c := NewCache(h, CacheOptions{})
	steps := []struct {
		name   string
		change func()
		opts   Options
		want   string // "hit", "render" or "uncached"
	}{
		{"first render", nil, web, "render"},
		{"again", nil, web, "hit"},
		{"same content in another checkout", nil, with(web, func(o *Options) { o.Root = copyRoot }), "hit"},
		{"same folder spelt otherwise", nil, with(web, func(o *Options) { o.Path = "./apps/web/" }), "hit"},
		{"change outside the folder", func() { write(t, root, "apps/db/cm.yaml", configMap("db2")) }, web, "hit"},
		{"change inside the folder", func() { write(t, root, "apps/web/cm.yaml", configMap("web2")) }, web, "render"},
		{"numbers and nulls", func() {
			write(t, root, "apps/web/cm.yaml", configMap("web3")+"spec:\n  nums: {a: 1, b: 1.0, c: 1.5, d: 1e21, e: null, f: [true, \"1\"]}\n  g: ${N:=2}\n")
		}, web, "render"},
		{"numbers and nulls again", nil, web, "hit"},
		{"numbers substituted", nil, with(web, func(o *Options) { o.Substitute = map[string]string{"N": "3.0"} }), "render"},
		{"numbers substituted again", nil, with(web, func(o *Options) { o.Substitute = map[string]string{"N": "3.0"} }), "hit"},
		{"substitution", nil, with(web, func(o *Options) { o.Substitute = map[string]string{} }), "render"},
		{"substitution again", nil, with(web, func(o *Options) { o.Substitute = map[string]string{} }), "hit"},
		{"other variables", nil, with(web, func(o *Options) { o.Substitute = map[string]string{"A": "b"} }), "render"},
		{"other limits", nil, with(web, func(o *Options) { o.MaxObjects = 10 }), "render"},
		{"other folder", nil, Options{Root: root, Path: "apps/db"}, "render"},
		{"remote bases", nil, with(web, func(o *Options) { o.AllowRemoteBases = true }), "uncached"},
		{"remote bases again", nil, with(web, func(o *Options) { o.AllowRemoteBases = true }), "uncached"},
		{"no tree hash", nil, with(web, func(o *Options) { o.Path = "missing" }), "uncached"},

		{"overlay", nil, overlay, "render"},
		{"overlay again", nil, overlay, "hit"},
		{"overlay: change outside overlay and base", func() { write(t, root, "other/cm.yaml", configMap("other2")) }, overlay, "hit"},
		{"overlay: change in its base", func() { write(t, root, "apps/base/cm.yaml", configMap("base2")) }, overlay, "render"},
		{"overlay: change beside it", func() { write(t, root, "apps/db/cm.yaml", configMap("db3")) }, overlay, "render"},
		{"overlay: unchanged", nil, overlay, "hit"},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		before := c.Stats()
		res, err := c.Render(context.Background(), s.opts)
		if s.opts.Path == "missing" {
			if err == nil {
				t.Fatalf("%s: no error", s.name)
			}
		} else if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		after := c.Stats()
		got := "none"
		switch {
		case after.Hits == before.Hits+1 && after.Renders == before.Renders:
			got = "hit"
		case after.Renders == before.Renders+1 && after.Hits == before.Hits:
			got = "render"
		case after.Uncached == before.Uncached+1:
			got = "uncached"
		}
		if got != s.want {
			t.Errorf("%s: %s, want %s (stats %+v then %+v)", s.name, got, s.want, before, after)
		}
		if err != nil {
			continue
		}
		// A hit gives what rendering gives.
		direct, err := Render(context.Background(), s.opts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Hash != direct.Hash {
			t.Errorf("%s: cached hash %s, a render gives %s", s.name, res.Hash, direct.Hash)
		}
		if diff := cmp.Diff(direct.Objects, res.Objects); diff != "" {
			t.Errorf("%s: cached objects differ from a render's (-render +cached):\n%s", s.name, diff)
		}
	}
}

// TestCacheFailuresAreNotKept: a failed render is rendered again, and a
// fixed tree renders.
func TestCacheFailuresAreNotKept(t *testing.T) {
	root := t.TempDir()
	write(t, root, "app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata:\n  k: v\n   bad: indent\n")
	c := NewCache(&contentHasher{}, CacheOptions{})
	opts := Options{Root: root, Path: "app"}
	for i := range 2 {
		if _, err := c.Render(context.Background(), opts); err == nil {
			t.Fatalf("render %d of a broken file: no error", i)
		}
	}
	if s := c.Stats(); s.Renders != 2 || s.Hits != 0 || s.Entries != 0 {
		t.Fatalf("stats %+v: want two renders and nothing kept", s)
	}
	write(t, root, "app/cm.yaml", configMap("a"))
	if _, err := c.Render(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
}

// TestCacheCopies: what a caller does to its objects reaches neither the
// cache nor other callers.
func TestCacheCopies(t *testing.T) {
	root := t.TempDir()
	write(t, root, "app/cm.yaml", configMap("a"))
	c := NewCache(&contentHasher{}, CacheOptions{})
	opts := Options{Root: root, Path: "app"}
	first, err := c.Render(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	first.Objects[0].SetName("changed")
	first.Objects[0].Object["data"].(map[string]any)["k"] = "changed"
	first.Objects = nil
	second, err := c.Render(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if c.Stats().Hits != 1 {
		t.Fatalf("stats %+v, want a hit", c.Stats())
	}
	if len(second.Objects) != 1 || second.Objects[0].GetName() != "a" || second.Objects[0].Object["data"].(map[string]any)["k"] != "v" {
		t.Fatalf("a caller's change reached the cache: %v", second.Objects)
	}
}

// TestCacheBounds: the cache keeps at most MaxEntries renders and
// MaxBytes bytes, dropping the least recently used, and never keeps a
// render larger than MaxBytes.
func TestCacheBounds(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"a", "b", "c"} {
		write(t, root, name+"/cm.yaml", configMap(name))
	}
	res, err := Render(context.Background(), Options{Root: root, Path: "a"})
	if err != nil {
		t.Fatal(err)
	}
	one, err := encode(cacheKey{}, res) // what the cache counts of one render
	if err != nil {
		t.Fatal(err)
	}
	render := func(c *Cache, p string) {
		t.Helper()
		if _, err := c.Render(context.Background(), Options{Root: root, Path: p}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name    string
		opts    CacheOptions
		entries int
	}{
		{"by count", CacheOptions{MaxEntries: 2}, 2},
		{"by bytes", CacheOptions{MaxBytes: 2*one.size + one.size/2}, 2},
		{"too large to keep", CacheOptions{MaxBytes: one.size - 1}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCache(&contentHasher{}, tt.opts)
			render(c, "a")
			render(c, "b")
			render(c, "a") // a is now the most recently used
			render(c, "c") // drops b
			if s := c.Stats(); s.Entries != tt.entries || s.Bytes != int64(tt.entries)*one.size {
				t.Fatalf("stats %+v, want %d entries of %d bytes", s, tt.entries, one.size)
			}
			if tt.entries == 0 {
				return
			}
			before := c.Stats()
			render(c, "a")
			if c.Stats().Hits != before.Hits+1 {
				t.Error("the most recently used render was dropped")
			}
			render(c, "b")
			if c.Stats().Renders != before.Renders+1 {
				t.Error("the least recently used render was kept")
			}
		})
	}
}

// TestCacheConcurrentRendersOnce: callers that miss at the same time share
// one render. The tree hasher holds every caller until all have asked, so
// that all of them miss together.
func TestCacheConcurrentRendersOnce(t *testing.T) {
	root := t.TempDir()
	write(t, root, "app/cm.yaml", configMap("a"))
	const callers = 16
	var arrived sync.WaitGroup
	arrived.Add(callers)
	h := &contentHasher{gate: func() { arrived.Done(); arrived.Wait() }}
	c := NewCache(h, CacheOptions{})
	var wg sync.WaitGroup
	hashes := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Render(context.Background(), Options{Root: root, Path: "app"})
			if err == nil {
				hashes[i] = res.Hash
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || hashes[i] != hashes[0] {
			t.Fatalf("caller %d: %v, hash %s (caller 0: %s)", i, errs[i], hashes[i], hashes[0])
		}
	}
	if s := c.Stats(); s.Renders != 1 {
		t.Fatalf("stats %+v: %d callers rendered %d times, want once", s, callers, s.Renders)
	}
}
