package render_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"tether.dev/tether/internal/testenv"
	"tether.dev/tether/render"
	"tether.dev/tether/source"
)

// TestCacheWithGit renders a folder of a real repository, served over
// smart HTTP, through a Cache keyed by source.Fetcher's tree hashes: a
// commit that does not touch the folder is a hit, one that does is a
// render, and 1,000 callers (GitSyncs) at once render once.
func TestCacheWithGit(t *testing.T) {
	srv, err := testenv.StartGitServer(t.TempDir(), testenv.GitServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	repo, err := srv.CreateRepo("app")
	if err != nil {
		t.Fatal(err)
	}
	commit := func(files map[string]string) string {
		t.Helper()
		sha, err := repo.Commit(files, "test")
		if err != nil {
			t.Fatal(err)
		}
		return sha
	}
	cm := func(name string) string { return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n" }
	c1 := commit(map[string]string{"web/cm.yaml": cm("web"), "db/cm.yaml": cm("db")})
	c2 := commit(map[string]string{"db/cm.yaml": cm("db2")})   // not the rendered folder
	c3 := commit(map[string]string{"web/cm.yaml": cm("web2")}) // the rendered folder

	f := source.NewFetcher(t.TempDir(), source.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	cache := render.NewCache(f, render.CacheOptions{})
	ctx := context.Background()
	renderAt := func(sha string) *render.Result {
		t.Helper()
		dir, err := f.Checkout(ctx, repo.URL, source.Revision{Ref: "main", SHA: sha}, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := cache.Render(ctx, render.Options{Root: dir, Path: "web"})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, step := range []struct {
		name        string
		sha         string
		wantRenders int64
		wantName    string
	}{
		{"first commit", c1, 1, "web"},
		{"commit touching another folder", c2, 1, "web"},
		{"commit touching the folder", c3, 2, "web2"},
		{"back to the first commit", c1, 2, "web"},
	} {
		res := renderAt(step.sha)
		if got := cache.Stats().Renders; got != step.wantRenders {
			t.Errorf("%s: %d renders so far, want %d", step.name, got, step.wantRenders)
		}
		if got := res.Objects[0].GetName(); got != step.wantName {
			t.Errorf("%s: object %s, want %s", step.name, got, step.wantName)
		}
	}

	// 1,000 GitSyncs on one repository, at a new commit that leaves the
	// folder as it was at c3: no render at all; and at one that changes
	// it: one render.
	for _, step := range []struct {
		files       map[string]string
		wantRenders int64
	}{
		{map[string]string{"README.md": "x\n"}, 0},
		{map[string]string{"web/cm.yaml": cm("web3")}, 1},
	} {
		sha := commit(step.files)
		dir, err := f.Checkout(ctx, repo.URL, source.Revision{Ref: "main", SHA: sha}, nil)
		if err != nil {
			t.Fatal(err)
		}
		before := cache.Stats()
		var wg sync.WaitGroup
		errs := make(chan error, 1000)
		for range 1000 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := cache.Render(ctx, render.Options{Root: dir, Path: "web"}); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := cache.Stats().Renders - before.Renders; got != step.wantRenders {
			t.Errorf("1,000 renders at %s: %d rendered, want %d", sha[:7], got, step.wantRenders)
		}
	}
}
