package source

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"tether.dev/tether/internal/testenv"
)

func TestHTTPBasicAuth(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{Username: "alice", Password: "right-pass"})
	repo := createRepo(t, srv, "app")
	sha := commit(t, repo, map[string]string{"a.yaml": "a: 1\n"})
	f := newFetcher(t, Options{})
	ctx := context.Background()
	good := &Auth{Username: "alice", Password: "right-pass"}

	rev, err := f.Resolve(ctx, repo.URL, Ref{Branch: "main"}, good)
	must(t, err)
	if _, err := f.Checkout(ctx, repo.URL, rev, good); err != nil || rev.SHA != sha {
		t.Fatalf("checkout with good credentials: %v", err)
	}

	for name, auth := range map[string]*Auth{
		"wrong password": {Username: "alice", Password: "wrong-pass"},
		"no credentials": nil,
	} {
		_, err := f.Resolve(ctx, repo.URL, Ref{Branch: "main"}, auth)
		if !errors.Is(err, ErrAuth) || IsTransient(err) || strings.Contains(err.Error(), "wrong-pass") {
			t.Errorf("%s: %v, want non-transient ErrAuth without the password", name, err)
		}
	}

	// Credentials rotated on the server: the cached good answer is dropped
	// by Forget, and the next listing fails with ErrAuth.
	srv.SetAuth(testenv.GitServerOptions{Username: "alice", Password: "new-pass"})
	f.Forget(repo.URL)
	if _, err := f.Resolve(ctx, repo.URL, Ref{Branch: "main"}, good); !errors.Is(err, ErrAuth) {
		t.Fatalf("after rotation: %v, want ErrAuth", err)
	}
	// Credentials in the URL are used, and never shown.
	inURL := strings.Replace(repo.URL, "http://", "http://alice:new-pass@", 1)
	if _, err := f.Resolve(ctx, inURL, Ref{Branch: "main"}, nil); err != nil {
		t.Fatalf("credentials in URL: %v", err)
	}
	badURL := strings.Replace(repo.URL, "http://", "http://alice:bad-pass@", 1)
	_, err = f.Resolve(ctx, badURL, Ref{Branch: "main"}, nil)
	if !errors.Is(err, ErrAuth) || strings.Contains(err.Error(), "bad-pass") || strings.Contains(err.Error(), "alice") {
		t.Fatalf("bad credentials in URL: %v", err)
	}
}

func TestHTTPBearerToken(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{BearerToken: "tok-good"})
	repo := createRepo(t, srv, "app")
	commit(t, repo, map[string]string{"a.yaml": "a: 1\n"})
	f := newFetcher(t, Options{})
	ctx := context.Background()
	auth := &Auth{BearerToken: "tok-good"}
	rev, err := f.Resolve(ctx, repo.URL, Ref{Branch: "main"}, auth)
	must(t, err)
	_, err = f.Checkout(ctx, repo.URL, rev, auth)
	must(t, err)
	_, err = f.Resolve(ctx, repo.URL, Ref{Branch: "main"}, &Auth{BearerToken: "tok-bad"})
	if !errors.Is(err, ErrAuth) || strings.Contains(err.Error(), "tok-bad") {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestHTTPSCustomCA(t *testing.T) {
	srv, err := testenv.StartGitServerTLS(t.TempDir(), testenv.GitServerOptions{})
	must(t, err)
	defer srv.Close()
	repo := createRepo(t, srv, "app")
	commit(t, repo, map[string]string{"a.yaml": "a: 1\n"})
	f := newFetcher(t, Options{})
	ctx := context.Background()

	_, err = f.Resolve(ctx, repo.URL, Ref{Branch: "main"}, nil)
	if !errors.Is(err, ErrAuth) || IsTransient(err) {
		t.Fatalf("untrusted certificate: %v, want ErrAuth", err)
	}
	auth := &Auth{CAData: srv.CACert()}
	rev, err := f.Resolve(ctx, repo.URL, Ref{Branch: "main"}, auth)
	must(t, err)
	dir, err := f.Checkout(ctx, repo.URL, rev, auth)
	must(t, err)
	if readTree(t, dir)["a.yaml"] != "a: 1\n" {
		t.Fatal("wrong content over HTTPS")
	}
}

func TestSSHKeyAndKnownHosts(t *testing.T) {
	root := t.TempDir()
	key, pub := newSSHKey(t)
	srv, err := testenv.StartGitSSHServer(root, pub)
	must(t, err)
	defer srv.Close()
	repo, err := testenv.InitRepo(filepath.Join(root, "app"))
	must(t, err)
	sha := commit(t, repo, map[string]string{"a.yaml": "a: ssh\n"})
	url := srv.URL("app")
	f := newFetcher(t, Options{})
	ctx := context.Background()

	auth, err := AuthFromSecret(map[string][]byte{"identity": key, "known_hosts": srv.KnownHosts()})
	must(t, err)
	rev, err := f.Resolve(ctx, url, Ref{Branch: "main"}, auth)
	must(t, err)
	if rev.SHA != sha {
		t.Fatalf("Resolve over SSH = %v, want %s", rev, sha)
	}
	dir, err := f.Checkout(ctx, url, rev, auth)
	must(t, err)
	if readTree(t, dir)["a.yaml"] != "a: ssh\n" {
		t.Fatal("wrong content over SSH")
	}

	// known_hosts holds another key for this host: refused before any
	// credentials are offered.
	_, otherHost := newSSHKey(t)
	wrongHosts := []byte("[127.0.0.1]:" + strings.Split(srv.Addr(), ":")[1] + " " + string(ssh.MarshalAuthorizedKey(otherHost)))
	_, err = f.Resolve(ctx, url, Ref{Branch: "main"}, &Auth{SSHPrivateKey: key, KnownHosts: wrongHosts})
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "host key") {
		t.Fatalf("wrong host key: %v, want ErrAuth about the host key", err)
	}

	// No known_hosts at all: refused, never trust-on-first-use.
	_, err = f.Resolve(ctx, url, Ref{Branch: "main"}, &Auth{SSHPrivateKey: key})
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "known_hosts is required") {
		t.Fatalf("no known_hosts: %v", err)
	}

	// A key the server does not know.
	otherKey, _ := newSSHKey(t)
	_, err = f.Resolve(ctx, url, Ref{Branch: "main"}, &Auth{SSHPrivateKey: otherKey, KnownHosts: srv.KnownHosts()})
	if !errors.Is(err, ErrAuth) || IsTransient(err) {
		t.Fatalf("unauthorized key: %v, want ErrAuth", err)
	}
}

// A known_hosts that vouches for the server's key on one line and revokes
// it on a later one: the revocation wins, before any credentials are
// offered.
func TestSSHRevokedHostKey(t *testing.T) {
	root := t.TempDir()
	key, pub := newSSHKey(t)
	srv, err := testenv.StartGitSSHServer(root, pub)
	must(t, err)
	defer srv.Close()
	repo, err := testenv.InitRepo(filepath.Join(root, "app"))
	must(t, err)
	commit(t, repo, map[string]string{"a.yaml": "a: ssh\n"})
	f := newFetcher(t, Options{})
	ctx := context.Background()

	good := &Auth{SSHPrivateKey: key, KnownHosts: srv.KnownHosts()}
	if _, err := f.Resolve(ctx, srv.URL("app"), Ref{Branch: "main"}, good); err != nil {
		t.Fatalf("with the plain line alone: %v", err)
	}
	revoked := append(append([]byte{}, srv.KnownHosts()...), "@revoked "+string(srv.KnownHosts())...)
	sessions := srv.Sessions()
	_, err = f.Resolve(ctx, srv.URL("app"), Ref{Branch: "main"}, &Auth{SSHPrivateKey: key, KnownHosts: revoked})
	if !errors.Is(err, ErrAuth) || IsTransient(err) || !strings.Contains(err.Error(), "@revoked") {
		t.Fatalf("revoked host key: %v, want a non-transient ErrAuth about @revoked", err)
	}
	if srv.Sessions() != sessions {
		t.Fatal("a git command ran on a server whose host key is revoked")
	}
}
