package source

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/testenv"
)

// Integration tests: real Git (git http-backend and git-upload-pack) served
// on loopback by internal/testenv.

func startServer(t testing.TB, opts testenv.GitServerOptions) *testenv.GitServer {
	t.Helper()
	srv, err := testenv.StartGitServer(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func newFetcher(t *testing.T, opts Options) *Fetcher {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if opts.Timeout == 0 {
		opts.Timeout = 20 * time.Second
	}
	return NewFetcher(t.TempDir(), opts)
}

func createRepo(t testing.TB, srv *testenv.GitServer, name string) *testenv.GitRepo {
	t.Helper()
	r, err := srv.CreateRepo(name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func commit(t testing.TB, r *testenv.GitRepo, files map[string]string) string {
	t.Helper()
	sha, err := r.Commit(files, "test commit")
	if err != nil {
		t.Fatal(err)
	}
	return sha
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readTree returns path -> content of every regular file under dir.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Type()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			out[filepath.ToSlash(rel)] = "-> " + target
			return nil
		}
		b, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestResolveAndCheckoutEveryRefKind(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{})
	repo := createRepo(t, srv, "app")
	c1 := commit(t, repo, map[string]string{"app.yaml": "version: 1\n", "base/kustomization.yaml": "resources: []\n"})
	must(t, repo.Tag("v1.0.0", c1))
	must(t, repo.Branch("release", c1))
	must(t, os.WriteFile(filepath.Join(repo.Dir, "run.sh"), []byte("#!/bin/sh\n"), 0o755))
	c2 := commit(t, repo, map[string]string{"app.yaml": "version: 2\n", "link.yaml": ""})
	must(t, repo.AnnotatedTag("v1.1.0", c2, "release 1.1"))
	c3 := commit(t, repo, map[string]string{"app.yaml": "version: 3\n", "base/kustomization.yaml": testenv.DeleteFile})
	must(t, repo.Tag("v2.0.0-rc.1", c3))
	_, err := repo.Git("rm", "-q", "link.yaml")
	must(t, err)
	must(t, os.Symlink("app.yaml", filepath.Join(repo.Dir, "link.yaml")))
	c4 := commit(t, repo, nil)

	v1 := map[string]string{"app.yaml": "version: 1\n", "base/kustomization.yaml": "resources: []\n"}
	v2 := map[string]string{"app.yaml": "version: 2\n", "base/kustomization.yaml": "resources: []\n", "run.sh": "#!/bin/sh\n", "link.yaml": ""}
	v4 := map[string]string{"app.yaml": "version: 3\n", "run.sh": "#!/bin/sh\n", "link.yaml": "-> app.yaml"}

	f := newFetcher(t, Options{})
	for _, tc := range []struct {
		ref       Ref
		wantRev   Revision
		wantFiles map[string]string
	}{
		{Ref{Branch: "main"}, Revision{"main", c4}, v4},
		{Ref{Branch: "release"}, Revision{"release", c1}, v1},
		{Ref{Tag: "v1.0.0"}, Revision{"v1.0.0", c1}, v1},
		{Ref{Tag: "v1.1.0"}, Revision{"v1.1.0", c2}, v2}, // annotated: the commit, not the tag object
		{Ref{Semver: ">=1.0.0 <2.0.0"}, Revision{"v1.1.0", c2}, v2},
		{Ref{Semver: "~1.0"}, Revision{"v1.0.0", c1}, v1},
		{Ref{Semver: ">=2.0.0-0"}, Revision{"v2.0.0-rc.1", c3}, nil},
		{Ref{Commit: strings.ToUpper(c2)}, Revision{"", c2}, v2},
	} {
		t.Run(tc.ref.String(), func(t *testing.T) {
			rev, err := f.Resolve(context.Background(), repo.URL, tc.ref, nil)
			must(t, err)
			if rev != tc.wantRev {
				t.Fatalf("Resolve = %v, want %v", rev, tc.wantRev)
			}
			dir, err := f.Checkout(context.Background(), repo.URL, rev, nil)
			must(t, err)
			if filepath.Base(dir) != rev.SHA {
				t.Fatalf("checkout dir %s is not named after the SHA", dir)
			}
			if tc.wantFiles != nil {
				if diff := cmp.Diff(tc.wantFiles, readTree(t, dir)); diff != "" {
					t.Fatalf("checkout content (-want +got):\n%s", diff)
				}
			}
			if info, err := os.Stat(filepath.Join(dir, "run.sh")); err == nil && info.Mode().Perm()&0o100 == 0 {
				t.Fatalf("run.sh lost its executable bit: %v", info.Mode())
			}
		})
	}
}

func TestUnchangedPollThenNewCommit(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{})
	repo := createRepo(t, srv, "app")
	c1 := commit(t, repo, map[string]string{"a.yaml": "a: 1\n"})
	f := newFetcher(t, Options{}) // ResolveTTL 0: every poll lists
	ctx := context.Background()
	ref := Ref{Branch: "main"}

	rev, err := f.Resolve(ctx, repo.URL, ref, nil)
	must(t, err)
	dir1, err := f.Checkout(ctx, repo.URL, rev, nil)
	must(t, err)

	// An unchanged poll: one listing, no fetch, same directory.
	srv.ResetCounts()
	rev2, err := f.Resolve(ctx, repo.URL, ref, nil)
	must(t, err)
	dir2, err := f.Checkout(ctx, repo.URL, rev2, nil)
	must(t, err)
	if c := srv.Counts(); c.Advertisements != 1 || c.Fetches != 0 {
		t.Fatalf("unchanged poll: %d advertisements, %d fetches; want 1 and 0", c.Advertisements, c.Fetches)
	}
	if rev2.SHA != c1 || dir2 != dir1 {
		t.Fatalf("unchanged poll gave %v in %s", rev2, dir2)
	}

	// A new commit: the new SHA and exactly one fetch.
	c2 := commit(t, repo, map[string]string{"a.yaml": "a: 2\n"})
	srv.ResetCounts()
	before := f.Stats()
	rev3, err := f.Resolve(ctx, repo.URL, ref, nil)
	must(t, err)
	if rev3 != (Revision{"main", c2}) {
		t.Fatalf("after a commit Resolve = %v, want main@%s", rev3, c2)
	}
	dir3, err := f.Checkout(ctx, repo.URL, rev3, nil)
	must(t, err)
	if c := srv.Counts(); c.Fetches != 1 {
		t.Fatalf("new commit: %d fetches, want 1", c.Fetches)
	}
	if s := f.Stats(); s.Fetches-before.Fetches != 1 || s.Listings-before.Listings != 1 {
		t.Fatalf("stats %+v after %+v", s, before)
	}
	if got := readTree(t, dir3)["a.yaml"]; got != "a: 2\n" {
		t.Fatalf("new checkout a.yaml = %q", got)
	}
	if got := readTree(t, dir1)["a.yaml"]; got != "a: 1\n" {
		t.Fatalf("old checkout was modified: a.yaml = %q", got)
	}
}

func TestSharedURLAndRefWithinTTL(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{})
	repo := createRepo(t, srv, "app")
	sha := commit(t, repo, map[string]string{"a.yaml": "a: 1\n"})
	f := newFetcher(t, Options{ResolveTTL: time.Hour})
	ctx := context.Background()

	dirs := resolveAndCheckout(t, f, 8, func(int) (string, *Auth) { return repo.URL, nil })
	for i := range dirs {
		if dirs[i] != dirs[0] || filepath.Base(dirs[i]) != sha {
			t.Fatalf("caller %d got %s, caller 0 got %s", i, dirs[i], dirs[0])
		}
	}
	// One listing by Resolve, one fetch (which makes its own advertisement).
	if s := f.Stats(); s.Listings != 1 || s.Fetches != 1 || s.Checkouts != 1 {
		t.Fatalf("stats %+v, want one listing, one fetch, one checkout", s)
	}
	if c := srv.Counts(); c.Advertisements != 2 || c.Fetches != 1 {
		t.Fatalf("server counts %+v, want 2 advertisements (listing + fetch) and 1 fetch", c)
	}

	// Another ref of the same URL is answered from the same listing; a
	// Forget (webhook) makes the next Resolve ask again.
	must(t, repo.Tag("v1.0.0", sha))
	if _, err := f.Resolve(ctx, repo.URL, Ref{Tag: "v1.0.0"}, nil); !errors.Is(err, ErrRefNotFound) {
		t.Fatalf("tag made after the cached listing: %v, want ErrRefNotFound from the cache", err)
	}
	f.Forget(repo.URL)
	if rev, err := f.Resolve(ctx, repo.URL, Ref{Tag: "v1.0.0"}, nil); err != nil || rev.SHA != sha {
		t.Fatalf("after Forget: %v, %v", rev, err)
	}
}

func TestBranchMovedBetweenResolveAndCheckout(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{})
	repo := createRepo(t, srv, "app")
	c1 := commit(t, repo, map[string]string{"a.yaml": "a: 1\n"})
	f := newFetcher(t, Options{})
	rev, err := f.Resolve(context.Background(), repo.URL, Ref{Branch: "main"}, nil)
	must(t, err)
	commit(t, repo, map[string]string{"a.yaml": "a: 2\n"})
	dir, err := f.Checkout(context.Background(), repo.URL, rev, nil)
	must(t, err)
	if filepath.Base(dir) != c1 || readTree(t, dir)["a.yaml"] != "a: 1\n" {
		t.Fatalf("checkout of %v gave %s with %v", rev, dir, readTree(t, dir))
	}
}

func TestCheckoutCommitByExactSHA(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{})
	repo := createRepo(t, srv, "app")
	c1 := commit(t, repo, map[string]string{"a.yaml": "a: 1\n"})
	commit(t, repo, map[string]string{"a.yaml": "a: 2\n"})
	_, err := repo.Git("config", "uploadpack.allowReachableSHA1InWant", "true")
	must(t, err)
	f := newFetcher(t, Options{})
	dir, err := f.Checkout(context.Background(), repo.URL, Revision{SHA: c1}, nil)
	must(t, err)
	if readTree(t, dir)["a.yaml"] != "a: 1\n" {
		t.Fatalf("content %v", readTree(t, dir))
	}
	if c := srv.Counts(); c.Fetches != 1 {
		t.Fatalf("want one fetch by SHA, got %+v", c)
	}
	_, err = f.Checkout(context.Background(), repo.URL, Revision{SHA: strings.Repeat("ab", 20)}, nil)
	if !errors.Is(err, ErrRefNotFound) || IsTransient(err) {
		t.Fatalf("missing commit: %v, want ErrRefNotFound", err)
	}
}

func TestUserErrors(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{})
	repo := createRepo(t, srv, "app")
	commit(t, repo, map[string]string{"a.yaml": "a: 1\n"})
	must(t, repo.Tag("v1.0.0", ""))
	f := newFetcher(t, Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		name, url string
		ref       Ref
		kind      error
		msg       string
	}{
		{"missing branch", repo.URL, Ref{Branch: "nope"}, ErrRefNotFound, `branch "nope" does not exist (branches: main)`},
		{"missing tag", repo.URL, Ref{Tag: "v9"}, ErrRefNotFound, `tag "v9" does not exist (tags: v1.0.0)`},
		{"no semver match", repo.URL, Ref{Semver: ">=2"}, ErrRefNotFound, `no tag matches semver range ">=2" (newest version tags: v1.0.0)`},
		{"missing repo", srv.URL() + "/nope/.git", Ref{Branch: "main"}, ErrRepoNotFound, "repository not found"},
		{"invalid ref", repo.URL, Ref{Branch: "main", Tag: "v1"}, ErrInvalidRef, "set only one"},
		{"file URL", "file:///etc", Ref{Branch: "main"}, ErrInvalidRef, "unsupported URL scheme"},
		{"ssh without secret", "ssh://git@127.0.0.1:1/app.git", Ref{Branch: "main"}, ErrAuth, "needs a secret with identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.Resolve(ctx, tc.url, tc.ref, nil)
			if !errors.Is(err, tc.kind) || IsTransient(err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v\nwant non-transient %v containing %q", err, tc.kind, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "git "+RedactURL(tc.url)) {
				t.Fatalf("error %q does not lead with the URL", err)
			}
		})
	}
}

func closedPortURL(t *testing.T, userinfo string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + userinfo + addr + "/app/.git"
}

func TestUnreachableIsTransientAndRedacted(t *testing.T) {
	f := newFetcher(t, Options{})
	url := closedPortURL(t, "alice:hunter2@")
	_, err := f.Resolve(context.Background(), url, Ref{Branch: "main"}, nil)
	if !errors.Is(err, ErrUnreachable) || !IsTransient(err) {
		t.Fatalf("closed port: %v, want transient ErrUnreachable", err)
	}
	_, err2 := f.Checkout(context.Background(), url, Revision{Ref: "main", SHA: strings.Repeat("a", 40)}, nil)
	if !errors.Is(err2, ErrUnreachable) {
		t.Fatalf("checkout from closed port: %v", err2)
	}
	for _, e := range []error{err, err2} {
		if s := e.Error(); strings.Contains(s, "hunter2") || strings.Contains(s, "alice") {
			t.Fatalf("error shows credentials: %s", s)
		}
	}
}

func TestTimeout(t *testing.T) {
	// A server that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	f := newFetcher(t, Options{Timeout: 200 * time.Millisecond})
	_, err = f.Resolve(context.Background(), "http://"+ln.Addr().String()+"/app/.git", Ref{Branch: "main"}, nil)
	if !errors.Is(err, ErrTimeout) || !IsTransient(err) {
		t.Fatalf("silent server: %v, want transient ErrTimeout", err)
	}
}

func TestPruneKeepsRecentAndHandedOut(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{})
	repo := createRepo(t, srv, "app")
	f := newFetcher(t, Options{KeepRevisions: 2})
	clock := time.Now()
	// Each reading of the clock moves it on, so hand-outs are ordered; the
	// steps are small enough that all stay within the grace period.
	f.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	var dirs []string
	for i := range 4 {
		sha := commit(t, repo, map[string]string{"n": strings.Repeat("x", i)})
		dir, err := f.Checkout(context.Background(), repo.URL, Revision{Ref: "main", SHA: sha}, nil)
		must(t, err)
		dirs = append(dirs, dir)
	}
	// All four were handed out within the grace period: none removed.
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("checkout %s removed while in use: %v", d, err)
		}
	}
	// Past the grace period only the two most recently handed out stay.
	f.grace = 0
	_, err := f.Checkout(context.Background(), repo.URL, Revision{Ref: "main", SHA: filepath.Base(dirs[0])}, nil) // reuse: no prune
	must(t, err)
	sha := commit(t, repo, map[string]string{"n": "new"})
	dir, err := f.Checkout(context.Background(), repo.URL, Revision{Ref: "main", SHA: sha}, nil)
	must(t, err)
	entries, err := os.ReadDir(filepath.Dir(dir))
	must(t, err)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{filepath.Base(dirs[0]), sha}
	if diff := cmp.Diff(want, left, cmpSorted); diff != "" {
		t.Fatalf("checkouts left (-want +got):\n%s", diff)
	}
}

var cmpSorted = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})
