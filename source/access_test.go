package source

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"

	"tether.dev/tether/internal/testenv"
)

// checkoutDirs lists every checkout (and half-written tree) under the
// Fetcher's cache, relative to it.
func checkoutDirs(t *testing.T, f *Fetcher) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(f.cacheDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if filepath.Base(filepath.Dir(p)) == checkoutsDir {
			rel, _ := filepath.Rel(f.cacheDir, p)
			out = append(out, rel)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

// Tenant A checks out a private repository; tenant B, naming the same
// repository under any spelling and A's commit, gets the host's
// authentication error and no directory until it presents a secret that
// the host accepts.
func TestPrivateCheckoutNotServedToOtherCredentials(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{Username: "alice", Password: "right-pass"})
	repo := createRepo(t, srv, "private")
	x := commit(t, repo, map[string]string{"secret.yaml": "data: tenant-a\n"})
	// A long TTL: every listing and checkout would be reused if the cache
	// allowed it.
	f := newFetcher(t, Options{ResolveTTL: time.Hour})
	ctx := context.Background()
	a := &Auth{Username: "alice", Password: "right-pass"}

	rev, err := f.Resolve(ctx, repo.URL, Ref{Branch: "main"}, a)
	must(t, err)
	dirA, err := f.Checkout(ctx, repo.URL, rev, a)
	must(t, err)
	if rev.SHA != x {
		t.Fatalf("A resolved %v, want %s", rev, x)
	}

	host := strings.TrimPrefix(srv.URL(), "http://")
	spellings := []string{
		repo.URL,
		repo.URL + "/",
		"http://" + host + "/private",
		"http://" + host + "/private/",
		"HTTP://" + host + "/private/.git",
		"http://alice@" + host + "/private/.git",
		"http://alice:wrong-pass@" + host + "/private/.git",
	}
	others := map[string]*Auth{
		"no secret":    nil,
		"wrong secret": {Username: "alice", Password: "wrong-pass"},
		"a token":      {BearerToken: "right-pass"},
	}
	for _, u := range spellings {
		for name, b := range others {
			if b != nil && strings.Contains(u, "@") {
				continue // the URL's credentials and a secret: covered by either alone
			}
			check := func(what string, dir string, err error) {
				t.Helper()
				if dir != "" || !errors.Is(err, ErrAuth) || IsTransient(err) ||
					!strings.Contains(err.Error(), "authentication") || strings.Contains(err.Error(), "wrong-pass") {
					t.Errorf("B (%s) %s of %s: dir %q, error %v; want a non-transient ErrAuth and no directory", name, what, u, dir, err)
				}
			}
			_, err := f.Resolve(ctx, u, Ref{Commit: x}, b)
			check("Resolve of commit", "", err)
			dir, err := f.Checkout(ctx, u, Revision{SHA: x}, b)
			check("Checkout of the bare SHA", dir, err)
			dir, err = f.Checkout(ctx, u, Revision{Ref: "main", SHA: x}, b)
			check("Checkout of main@SHA", dir, err)
		}
	}
	if got := checkoutDirs(t, f); len(got) != 1 {
		t.Fatalf("checkouts in the cache after B's attempts: %v, want only A's", got)
	}

	// B with the right secret (here in the URL, another spelling) works,
	// from a cache of its own.
	withSecret := "http://alice:right-pass@" + host + "/private"
	revB, err := f.Resolve(ctx, withSecret, Ref{Commit: strings.ToUpper(x)}, nil)
	must(t, err)
	dirB, err := f.Checkout(ctx, withSecret, revB, nil)
	must(t, err)
	if readTree(t, dirB)["secret.yaml"] != "data: tenant-a\n" {
		t.Fatalf("B's checkout: %v", readTree(t, dirB))
	}
	if dirB == dirA {
		t.Fatalf("B with credentials of its own got A's directory %s", dirA)
	}
}

// Credentials revoked on the host: a checkout already in the cache is no
// longer handed out once the listing that proves access is renewed.
func TestCachedCheckoutNeedsAccessNow(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{Username: "alice", Password: "right-pass"})
	repo := createRepo(t, srv, "private")
	x := commit(t, repo, map[string]string{"a.yaml": "a: 1\n"})
	f := newFetcher(t, Options{ResolveTTL: time.Hour})
	ctx := context.Background()
	a := &Auth{Username: "alice", Password: "right-pass"}
	_, err := f.Checkout(ctx, repo.URL, Revision{Ref: "main", SHA: x}, a)
	must(t, err)

	srv.SetAuth(testenv.GitServerOptions{Username: "alice", Password: "rotated"})
	f.Forget(repo.URL + "/") // a webhook may spell the URL differently
	dir, err := f.Checkout(ctx, repo.URL, Revision{Ref: "main", SHA: x}, a)
	if dir != "" || !errors.Is(err, ErrAuth) {
		t.Fatalf("revoked credentials: dir %q, error %v; want ErrAuth and no directory", dir, err)
	}
	_, err = f.Resolve(ctx, repo.URL, Ref{Commit: x}, a)
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("Resolve of a commit with revoked credentials: %v, want ErrAuth", err)
	}
}

// Two callers with different credentials that both may read the
// repository get different cache folders; neither holds a secret in a
// name or a file.
func TestCacheFoldersPerCredentials(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{Username: "alice", Password: "pass-of-alice", BearerToken: "token-of-bob"})
	repo := createRepo(t, srv, "shared")
	x := commit(t, repo, map[string]string{"a.yaml": "a: 1\n"})
	f := newFetcher(t, Options{ResolveTTL: time.Hour})
	ctx := context.Background()
	rev := Revision{Ref: "main", SHA: x}

	dirA, err := f.Checkout(ctx, repo.URL, rev, &Auth{Username: "alice", Password: "pass-of-alice"})
	must(t, err)
	dirB, err := f.Checkout(ctx, repo.URL, rev, &Auth{BearerToken: "token-of-bob"})
	must(t, err)
	baseA, baseB := filepath.Dir(filepath.Dir(dirA)), filepath.Dir(filepath.Dir(dirB))
	if baseA == baseB || filepath.Dir(baseA) != f.cacheDir || filepath.Dir(baseB) != f.cacheDir {
		t.Fatalf("cache folders %s and %s; want two different folders in %s", baseA, baseB, f.cacheDir)
	}
	// The same credentials under another spelling share A's folder.
	dirA2, err := f.Checkout(ctx, strings.TrimSuffix(repo.URL, "/.git")+"/", rev, &Auth{Username: "alice", Password: "pass-of-alice"})
	must(t, err)
	if dirA2 != dirA {
		t.Fatalf("same credentials, other spelling: %s, want %s", dirA2, dirA)
	}

	err = filepath.WalkDir(f.cacheDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, secret := range []string{"pass-of-alice", "token-of-bob"} {
			if strings.Contains(p, secret) {
				t.Errorf("cache path %s holds a secret", p)
			}
			if d.Type().IsRegular() {
				b, err := os.ReadFile(p)
				must(t, err)
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("cache file %s holds a secret", p)
				}
			}
		}
		return nil
	})
	must(t, err)
}

func TestNormalizeURL(t *testing.T) {
	same := [][]string{
		{"https://git.example.com/org/app.git", "https://git.example.com/org/app", "https://GIT.Example.com/org/app/",
			"HTTPS://git.example.com:443/org/app.git/", "https://user:pw@git.example.com/org/app/.git"},
		{"ssh://git@example.com/org/app.git", "ssh://example.com:22/org/app", "git@example.com:org/app.git"},
		{"http://127.0.0.1:8080/app/.git", "http://127.0.0.1:8080/app"},
	}
	differ := []string{"https://git.example.com/org/App.git", "https://git.example.com:8443/org/app.git",
		"http://git.example.com/org/app.git", "https://git.example.com/org/app2.git"}
	norm := func(u string) string {
		ep, err := transport.NewEndpoint(u)
		must(t, err)
		return normalizeURL(ep)
	}
	seen := map[string]string{}
	for _, group := range same {
		want := norm(group[0])
		for _, u := range group[1:] {
			if got := norm(u); got != want {
				t.Errorf("normalizeURL(%s) = %s, want %s (as %s)", u, got, want, group[0])
			}
		}
		seen[want] = group[0]
	}
	for _, u := range differ {
		if other, ok := seen[norm(u)]; ok {
			t.Errorf("%s and %s normalise alike", u, other)
		}
	}
}

func TestCredentialID(t *testing.T) {
	dir := t.TempDir()
	f := NewFetcher(dir, Options{})
	ep := func(u string) *transport.Endpoint {
		e, err := transport.NewEndpoint(u)
		must(t, err)
		return e
	}
	plain := ep("https://h/r.git")
	anon := f.credentialID(plain, nil)
	alice := f.credentialID(plain, &Auth{Username: "alice", Password: "pw-1"})
	for name, got := range map[string]string{
		"empty Auth is anonymous": f.credentialID(plain, &Auth{}),
		"other spelling":          f.credentialID(ep("https://H/r"), nil),
	} {
		if got != anon {
			t.Errorf("%s: %s, want the anonymous identity %s", name, got, anon)
		}
	}
	for name, got := range map[string]string{
		"anonymous":         anon,
		"other password":    f.credentialID(plain, &Auth{Username: "alice", Password: "pw-2"}),
		"user name in URL":  f.credentialID(ep("https://alice@h/r.git"), nil),
		"fields run on":     f.credentialID(plain, &Auth{Username: "alicep", Password: "w-1"}),
		"token":             f.credentialID(plain, &Auth{BearerToken: "pw-1"}),
		"other cache's key": NewFetcher(t.TempDir(), Options{}).credentialID(plain, &Auth{Username: "alice", Password: "pw-1"}),
	} {
		if got == alice {
			t.Errorf("%s: same identity as alice's", name)
		}
	}
	if strings.Contains(alice, "pw-1") || strings.Contains(alice, "alice") {
		t.Errorf("identity %s shows the credentials", alice)
	}
	// The key is kept with the cache, so a restarted process finds its
	// caches again.
	if got := NewFetcher(dir, Options{}).credentialID(plain, &Auth{Username: "alice", Password: "pw-1"}); got != alice {
		t.Errorf("a second Fetcher on the same cache: %s, want %s", got, alice)
	}
	info, err := os.Stat(filepath.Join(dir, credentialKeyFile))
	must(t, err)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", info.Mode().Perm())
	}
}
