package source

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"tether.dev/tether/internal/testenv"
)

// TestTreeHash checks TreeHash against git's own answer (git rev-parse
// <commit>:<path>) for the root and folders of two commits, one of which
// changes only one folder, and its refusals.
func TestTreeHash(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{})
	repo := createRepo(t, srv, "app")
	c1 := commit(t, repo, map[string]string{"apps/web/a.yaml": "a: 1\n", "apps/db/b.yaml": "b: 1\n", "README.md": "x\n"})
	c2 := commit(t, repo, map[string]string{"apps/db/b.yaml": "b: 2\n"})
	f := newFetcher(t, Options{})
	ctx := context.Background()
	dirs := map[string]string{}
	for _, sha := range []string{c1, c2} {
		dir, err := f.Checkout(ctx, repo.URL, Revision{Ref: "main", SHA: sha}, nil)
		must(t, err)
		dirs[sha] = dir
	}
	want := func(sha, p string) string {
		t.Helper()
		out, err := repo.Git("rev-parse", sha+":"+p)
		must(t, err)
		return strings.TrimSpace(out)
	}
	for _, sha := range []string{c1, c2} {
		for _, p := range []string{"", ".", "./apps", "apps/web", "apps/db/", "apps/db/b.yaml"} {
			got, err := f.TreeHash(dirs[sha], p)
			must(t, err)
			gitPath := strings.TrimSuffix(strings.TrimPrefix(p, "./"), "/")
			if gitPath == "." {
				gitPath = ""
			}
			if w := want(sha, gitPath); got != w {
				t.Errorf("TreeHash(%s, %q) = %s, git says %s", sha[:7], p, got, w)
			}
		}
	}
	same := func(p string) bool {
		h1, err := f.TreeHash(dirs[c1], p)
		must(t, err)
		h2, err := f.TreeHash(dirs[c2], p)
		must(t, err)
		return h1 == h2
	}
	if !same("apps/web") || same("apps/db") || same("apps") || same(".") {
		t.Error("a commit changing apps/db only must change apps/db, apps and the root, and nothing else")
	}
	for name, call := range map[string]func() (string, error){
		"outside the repository": func() (string, error) { return f.TreeHash(dirs[c1], "../x") },
		"absent folder":          func() (string, error) { return f.TreeHash(dirs[c1], "nope") },
		"not a checkout":         func() (string, error) { return f.TreeHash(t.TempDir(), ".") },
		"another cache":          func() (string, error) { return f.TreeHash(filepath.Join(t.TempDir(), "x", checkoutsDir, c1), ".") },
	} {
		if h, err := call(); err == nil {
			t.Errorf("%s: TreeHash = %s, want an error", name, h)
		}
	}
}

// The GitSyncs of one repository ask for sibling folders at one commit:
// the first look remembers every folder it passed by, so the others cost
// no look into the object store (each loads the pack index again).
func TestTreeHashSiblingsOneLook(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{})
	repo := createRepo(t, srv, "siblings")
	c := commit(t, repo, map[string]string{"apps/web/a.yaml": "a: 1\n", "apps/db/b.yaml": "b: 1\n", "tools/x.yaml": "x: 1\n"})
	f := newFetcher(t, Options{})
	dir, err := f.Checkout(context.Background(), repo.URL, Revision{Ref: "main", SHA: c}, nil)
	must(t, err)
	for _, p := range []string{"apps/web", "apps/db", "apps", ".", "tools"} {
		got, err := f.TreeHash(dir, p)
		must(t, err)
		out, err := repo.Git("rev-parse", c+":"+strings.TrimPrefix(p, "."))
		must(t, err)
		if w := strings.TrimSpace(out); got != w {
			t.Errorf("TreeHash(%q) = %s, git says %s", p, got, w)
		}
	}
	if n := f.treeLooks.Load(); n != 1 {
		t.Errorf("%d looks into the object store for five folders on one way, want 1", n)
	}
	// A file is not remembered on the way: it takes a look of its own.
	if _, err := f.TreeHash(dir, "apps/db/b.yaml"); err != nil {
		t.Fatal(err)
	}
	if n := f.treeLooks.Load(); n != 2 {
		t.Errorf("%d looks after asking for a file, want 2", n)
	}
}
