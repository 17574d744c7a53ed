package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"tether.dev/tether/internal/testenv"
)

// Hostile repositories: each is made by the test with git, served on
// loopback, and must give a clear, non-transient error with nothing left
// in the cache's checkouts (or, for submodules, a documented skip).

// hostileRepo serves a fresh repository "evil" whose work tree build
// fills, and returns it with its commit.
func hostileRepo(t *testing.T, build func(t *testing.T, dir string)) (*testenv.GitRepo, Revision) {
	t.Helper()
	srv := startServer(t, testenv.GitServerOptions{})
	repo := createRepo(t, srv, "evil")
	must(t, os.WriteFile(filepath.Join(repo.Dir, "app.yaml"), []byte("kind: ConfigMap\n"), 0o644))
	build(t, repo.Dir)
	sha := commit(t, repo, nil)
	return repo, Revision{Ref: "main", SHA: sha}
}

func symlinks(links map[string]string) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		for name, target := range links {
			p := filepath.Join(dir, filepath.FromSlash(name))
			must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			must(t, os.Symlink(target, p))
		}
	}
}

// checkRefused checks a refused checkout: the kind, a message that says
// what and names the wanted parts, and nothing in the cache's checkouts.
func checkRefused(t *testing.T, f *Fetcher, dir string, err error, kind error, want, notWant []string) {
	t.Helper()
	if dir != "" || !errors.Is(err, kind) || IsTransient(err) {
		t.Fatalf("dir %q, error %v; want a non-transient %v and no directory", dir, err, kind)
	}
	for _, s := range want {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
	for _, s := range notWant {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q names %q", err, s)
		}
	}
	if left := checkoutDirs(t, f); len(left) != 0 {
		t.Errorf("left in the cache: %v", left)
	}
}

func TestSymlinksLeavingTheCheckout(t *testing.T) {
	for _, tc := range []struct {
		name  string
		links map[string]string
		bad   string // the link the error names
		kind  string // "outside" or "levels"
	}{
		{"absolute", map[string]string{"etc": "/etc/passwd-outside"}, "etc", "outside"},
		{"root", map[string]string{"deploy/root": "/"}, "deploy/root", "outside"},
		{"dot-dot", map[string]string{"base/up": "../../outside-dir"}, "base/up", "outside"},
		// Each link alone stays inside when read as text.
		{"chain through a link to ..", map[string]string{"d/up": "..", "x": "d/up/../outside-chain"}, "x", "outside"},
		{"chain of three", map[string]string{"l3": "d", "l2": "l3/..", "l1": "l2/../outside-three"}, "l1", "outside"},
		{"link into a link's parent", map[string]string{"a/b/up": "../..", "a/c": "b/up/../outside-nested"}, "a/c", "outside"},
		{"loop", map[string]string{"a": "b", "b": "a"}, "a", "levels"},
		// l05 needs 63 links followed, over Linux's 40.
		{"fan-out", fanOut(24), "l05", "levels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo, rev := hostileRepo(t, symlinks(tc.links))
			f := newFetcher(t, Options{})
			dir, err := f.Checkout(context.Background(), repo.URL, rev, nil)
			msg := "points outside the repository"
			if tc.kind == "levels" {
				msg = "too many levels of symbolic links"
			}
			var targets []string
			for _, target := range tc.links {
				if strings.Contains(target, "outside") {
					targets = append(targets, target)
				}
			}
			checkRefused(t, f, dir, err, ErrUnsafeTree, []string{fmt.Sprintf("symlink %q", tc.bad), msg}, targets)
		})
	}
}

// fanOut makes l00 -> ., l01 -> l00/l00, ...: a target that doubles at
// each level, which must be refused without following 2^n links.
func fanOut(n int) map[string]string {
	links := map[string]string{"l00": "."}
	for i := 1; i <= n; i++ {
		prev := fmt.Sprintf("l%02d", i-1)
		links[fmt.Sprintf("l%02d", i)] = prev + "/" + prev
	}
	return links
}

// Links that stay inside, also through other links, are written as they
// are.
func TestSymlinksInsideTheCheckout(t *testing.T) {
	links := map[string]string{
		"base/back":  "../app.yaml",
		"top":        "base/back",
		"base/self":  ".",
		"base/round": "self/../base/self/back",
		"dangling":   "base/not-there",
	}
	repo, rev := hostileRepo(t, symlinks(links))
	f := newFetcher(t, Options{})
	dir, err := f.Checkout(context.Background(), repo.URL, rev, nil)
	must(t, err)
	got := readTree(t, dir)
	for name, target := range links {
		if got[name] != "-> "+target {
			t.Errorf("%s = %q, want a link to %s", name, got[name], target)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "top"))
	if err != nil || string(b) != "kind: ConfigMap\n" {
		t.Errorf("reading through top: %q, %v", b, err)
	}
}

func TestTreeOverLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		build func(t *testing.T, dir string)
		want  []string
	}{
		{"one huge file", Options{MaxFileSize: 1 << 20}, func(t *testing.T, dir string) {
			writeBig(t, dir, "data/big.bin", 2<<20+1)
		}, []string{`file "data/big.bin" is 2.0 MiB`, "over the limit of 1 MiB per file"}},
		{"checkout too large", Options{MaxCheckoutSize: 1 << 20}, func(t *testing.T, dir string) {
			for i := range 3 {
				writeBig(t, dir, fmt.Sprintf("part%d.bin", i), 400<<10)
			}
		}, []string{`file "part2.bin" brings the checkout to 1.2 MiB`, "over the limit of 1 MiB per checkout"}},
		{"too many files", Options{MaxFiles: 5}, func(t *testing.T, dir string) {
			for i := range 10 {
				writeBig(t, dir, fmt.Sprintf("f%d.yaml", i), 1)
			}
		}, []string{"over the limit of 5 files and directories per checkout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo, rev := hostileRepo(t, tc.build)
			f := newFetcher(t, tc.opts)
			dir, err := f.Checkout(context.Background(), repo.URL, rev, nil)
			checkRefused(t, f, dir, err, ErrTooLarge, tc.want, nil)
		})
	}
}

func writeBig(t *testing.T, dir, name string, size int) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	// Not all zeros, but quick to make.
	must(t, os.WriteFile(p, bytes.Repeat([]byte("tether-"), size/7+1)[:size], 0o644))
}

// readRecorder records which objects were read in full.
type readRecorder struct {
	storer.EncodedObjectStorer
	read map[plumbing.Hash]bool
}

func (r *readRecorder) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	r.read[h] = true
	return r.EncodedObjectStorer.EncodedObject(t, h)
}

func (r *readRecorder) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	return r.EncodedObjectStorer.(interface {
		EncodedObjectSize(plumbing.Hash) (int64, error)
	}).EncodedObjectSize(h)
}

// The per-file limit is checked from the object's header: a blob over it
// is never read into memory.
func TestHugeBlobIsNotRead(t *testing.T) {
	repo, rev := hostileRepo(t, func(t *testing.T, dir string) { writeBig(t, dir, "big.bin", 3<<20) })
	f := newFetcher(t, Options{MaxFileSize: 1 << 20})
	_, err := f.Checkout(context.Background(), repo.URL, rev, nil)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("checkout: %v, want ErrTooLarge", err)
	}
	// The commit stays in the cache's bare repository; plan its tree again
	// and watch which objects are read.
	_, key, err := f.repoKey(repo.URL, nil)
	must(t, err)
	bare, err := git.PlainOpen(filepath.Join(f.cacheDir, key.dir(), shallowRepo))
	must(t, err)
	c, err := bare.CommitObject(plumbing.NewHash(rev.SHA))
	must(t, err)
	tree, err := c.Tree()
	must(t, err)
	big, err := tree.FindEntry("big.bin")
	must(t, err)
	rec := &readRecorder{EncodedObjectStorer: bare.Storer, read: map[plumbing.Hash]bool{}}
	if _, err := f.planTree(rec, tree); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("planTree: %v, want ErrTooLarge", err)
	}
	if rec.read[big.Hash] {
		t.Fatal("the blob over the limit was read in full")
	}
}

// A submodule is neither fetched nor followed: its folder stays empty, a
// log line says so, and no request reaches the submodule's URL.
func TestSubmoduleIsSkipped(t *testing.T) {
	var requests atomic.Int64
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "no", http.StatusNotFound)
	}))
	defer sub.Close()

	srv := startServer(t, testenv.GitServerOptions{})
	repo := createRepo(t, srv, "app")
	commit(t, repo, map[string]string{"app.yaml": "kind: ConfigMap\n"})
	gitmodules := fmt.Sprintf("[submodule \"vendor/lib\"]\n\tpath = vendor/lib\n\turl = %s/lib.git\n", sub.URL)
	must(t, os.WriteFile(filepath.Join(repo.Dir, ".gitmodules"), []byte(gitmodules), 0o644))
	_, err := repo.Git("add", ".gitmodules")
	must(t, err)
	_, err = repo.Git("update-index", "--add", "--cacheinfo", "160000,"+strings.Repeat("1234567890", 4)+",vendor/lib")
	must(t, err)
	_, err = repo.Git("commit", "--quiet", "-m", "add a submodule")
	must(t, err)
	sha, err := repo.Head()
	must(t, err)

	f := newFetcher(t, Options{})
	var logs bytes.Buffer
	f.log = slog.New(slog.NewTextHandler(&logs, nil))
	dir, err := f.Checkout(context.Background(), repo.URL, Revision{Ref: "main", SHA: sha}, nil)
	must(t, err)
	if n := requests.Load(); n != 0 {
		t.Fatalf("%d requests reached the submodule's URL", n)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "vendor", "lib"))
	if err != nil || len(entries) != 0 {
		t.Fatalf("submodule folder: %v, %v; want an empty folder", entries, err)
	}
	if got := readTree(t, dir); got["app.yaml"] != "kind: ConfigMap\n" || got[".gitmodules"] != gitmodules {
		t.Fatalf("checkout: %v", got)
	}
	if !strings.Contains(logs.String(), "submodules skipped") || !strings.Contains(logs.String(), "vendor/lib") {
		t.Fatalf("no log line about the skipped submodule:\n%s", logs.String())
	}
}
