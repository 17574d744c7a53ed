package source

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"

	"tether.dev/tether/internal/testenv"
)

// TestManyCallersShareListingAndFetch: 1,000 callers (GitSyncs) resolving
// and checking out one repository at once, half of them with other
// credentials, cost one listing and one fetch per set of credentials, and
// get one checkout per set. Within the TTL, another round costs nothing.
func TestManyCallersShareListingAndFetch(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{Username: "u", Password: "p"})
	repo := createRepo(t, srv, "app")
	commit(t, repo, map[string]string{"a.yaml": "a: 1\n"})
	f := newFetcher(t, Options{ResolveTTL: time.Hour})
	// Two credential identities for one account: an Auth, and the same
	// user and password in the URL.
	u, err := url.Parse(repo.URL)
	must(t, err)
	u.User = url.UserPassword("u", "p")
	urls := []string{repo.URL, u.String()}
	auths := []*Auth{{Username: "u", Password: "p"}, nil}

	round := func() []string {
		dirs := resolveAndCheckout(t, f, 1000, func(i int) (string, *Auth) { return urls[i%2], auths[i%2] })
		for i := range dirs {
			if dirs[i] != dirs[i%2] {
				t.Fatalf("caller %d got %s, caller %d got %s", i, dirs[i], i%2, dirs[i%2])
			}
		}
		return dirs[:2]
	}
	dirs := round()
	if dirs[0] == dirs[1] {
		t.Fatal("callers with other credentials share a checkout")
	}
	if s := f.Stats(); s.Listings != 2 || s.Fetches != 2 || s.Checkouts != 2 {
		t.Fatalf("stats %+v, want 2 listings, 2 fetches, 2 checkouts (one each per credentials)", s)
	}
	if c := srv.Counts(); c.Fetches != 2 {
		t.Fatalf("server counts %+v, want 2 fetches", c)
	}
	srv.ResetCounts()
	round()
	if c := srv.Counts(); c.Advertisements != 0 || c.Fetches != 0 {
		t.Fatalf("second round within the TTL: server counts %+v, want none", c)
	}
}

// resolveAndCheckout runs n callers at once, each resolving main of the
// repository caller(i) names and checking it out, and returns their
// checkouts.
func resolveAndCheckout(t *testing.T, f *Fetcher, n int, caller func(i int) (string, *Auth)) []string {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	dirs := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url, auth := caller(i)
			rev, err := f.Resolve(ctx, url, Ref{Branch: "main"}, auth)
			if err != nil {
				errs[i] = err
				return
			}
			dirs[i], errs[i] = f.Checkout(ctx, url, rev, auth)
		}()
	}
	wg.Wait()
	for i := range n {
		must(t, errs[i])
	}
	return dirs
}

// BenchmarkResolveCheckout measures what one GitSync's use of the source
// costs once the repository is cached (a poll within the TTL: Resolve and
// Checkout of the same revision), and what 1,000 GitSyncs arriving at once
// at a new Fetcher cost in all (one listing, one fetch, one checkout
// shared), reported per caller. retained-B/caller is the heap the Fetcher
// still holds after the round, per caller.
func BenchmarkResolveCheckout(b *testing.B) {
	srv := startServer(b, testenv.GitServerOptions{})
	repo := createRepo(b, srv, "app")
	files := map[string]string{}
	for i := range 10 {
		files[fmt.Sprintf("objects/cm-%d.yaml", i)] = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%d\n", i)
	}
	commit(b, repo, files)
	ctx := context.Background()
	use := func(f *Fetcher) error {
		rev, err := f.Resolve(ctx, repo.URL, Ref{Branch: "main"}, nil)
		if err != nil {
			return err
		}
		_, err = f.Checkout(ctx, repo.URL, rev, nil)
		return err
	}
	b.Run("warm", func(b *testing.B) {
		f := NewFetcher(b.TempDir(), Options{ResolveTTL: time.Hour, Logger: discardLogger()})
		if err := use(f); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := use(f); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("callers=1000", func(b *testing.B) {
		const callers = 1000
		b.ReportAllocs()
		var retained uint64
		for b.Loop() {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			f := NewFetcher(b.TempDir(), Options{ResolveTTL: time.Hour, Logger: discardLogger()})
			var wg sync.WaitGroup
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := use(f); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			runtime.GC()
			runtime.ReadMemStats(&after)
			if after.HeapAlloc > before.HeapAlloc {
				retained = after.HeapAlloc - before.HeapAlloc
			}
			if s := f.Stats(); s.Listings != 1 || s.Fetches != 1 || s.Checkouts != 1 {
				b.Fatalf("stats %+v", s)
			}
			runtime.KeepAlive(f)
		}
		b.ReportMetric(float64(retained)/callers, "retained-B/caller")
	})
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
