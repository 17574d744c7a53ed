package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// gitHTTPBackend is Debian's location of git's smart HTTP CGI program.
const gitHTTPBackend = "/usr/lib/git-core/git-http-backend"

// GitServerOptions is the authentication a GitServer demands. Empty fields
// mean no authentication. When both basic credentials and a bearer token are
// set, either is accepted.
type GitServerOptions struct {
	Username, Password string
	BearerToken        string
}

// GitCounts counts requests a Git server answered, so tests can assert how
// much network a client used.
type GitCounts struct {
	// Advertisements counts ref advertisements for upload-pack: every
	// ls-remote, and the first half of every fetch over HTTP.
	Advertisements int
	// Fetches counts upload-pack exchanges that transfer objects (HTTP POST
	// git-upload-pack).
	Fetches int
	// Pushes counts receive-pack exchanges.
	Pushes int
	// Denied counts requests refused for missing or wrong credentials.
	Denied int
	// Repos holds the same counts per repository name (the path below the
	// server root, without a trailing "/.git").
	Repos map[string]GitCounts
}

// GitServer serves every repository below a root directory over Git's smart
// HTTP protocol on 127.0.0.1, using the real `git http-backend`. It speaks
// protocol v0 (as go-git does) to every client, so that Counts tells a
// listing from a fetch.
type GitServer struct {
	root   string
	url    string
	srv    *http.Server
	ln     net.Listener
	done   chan struct{}
	caPEM  []byte
	mu     sync.Mutex
	auth   GitServerOptions
	counts GitCounts
}

// StartGitServer serves root over plain HTTP on a free loopback port.
func StartGitServer(root string, opts GitServerOptions) (*GitServer, error) {
	return startGitServer(root, opts, false)
}

// StartGitServerTLS is StartGitServer over HTTPS, with a certificate for
// 127.0.0.1 signed by a throwaway CA that CACert returns.
func StartGitServerTLS(root string, opts GitServerOptions) (*GitServer, error) {
	return startGitServer(root, opts, true)
}

func startGitServer(root string, opts GitServerOptions, useTLS bool) (*GitServer, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("git server: listen: %w", err)
	}
	s := &GitServer{root: root, ln: ln, auth: opts, done: make(chan struct{})}
	s.counts.Repos = map[string]GitCounts{}
	scheme := "http"
	if useTLS {
		cert, caPEM, err := selfSignedCert()
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("git server: certificate: %w", err)
		}
		s.caPEM = caPEM
		s.ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		scheme = "https"
	}
	s.url = scheme + "://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(s.ln)
	}()
	return s, nil
}

// URL is the server's base URL, e.g. http://127.0.0.1:41234 (no trailing
// slash).
func (s *GitServer) URL() string { return s.url }

// Root is the directory the server serves.
func (s *GitServer) Root() string { return s.root }

// CACert is the PEM certificate of the CA that signed the server's
// certificate; nil for a plain HTTP server.
func (s *GitServer) CACert() []byte { return s.caPEM }

// Close stops the server and waits for its serving goroutine. In-flight
// requests get a few seconds to finish.
func (s *GitServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	return err
}

// SetAuth replaces the credentials the server demands from the next request
// on.
func (s *GitServer) SetAuth(opts GitServerOptions) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth = opts
}

// Counts returns a snapshot of the request counters.
func (s *GitServer) Counts() GitCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	c.Repos = make(map[string]GitCounts, len(s.counts.Repos))
	for k, v := range s.counts.Repos {
		c.Repos[k] = v
	}
	return c
}

// ResetCounts sets every counter back to zero.
func (s *GitServer) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts = GitCounts{Repos: map[string]GitCounts{}}
}

// ServeHTTP checks credentials, counts the request and hands it to
// git http-backend.
func (s *GitServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	repo, kind := classify(r)
	s.mu.Lock()
	ok := authorized(r, s.auth)
	s.count(repo, kind, ok)
	s.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="tether-test"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return
	}
	// Protocol v0 only: under v2 a listing is also a POST to
	// git-upload-pack, which would blur the counters.
	r.Header.Del("Git-Protocol")
	h := &cgi.Handler{
		Path:   gitHTTPBackend,
		Dir:    s.root,
		Stderr: io.Discard, // "not our ref" and the like are the client's business
		Env: append(gitEnv(s.root),
			"GIT_PROJECT_ROOT="+s.root,
			"GIT_HTTP_EXPORT_ALL=1",
		),
	}
	h.ServeHTTP(w, r)
}

type requestKind int

const (
	otherRequest requestKind = iota
	advertisement
	fetch
	push
)

// classify names the repository and the kind of Git request.
func classify(r *http.Request) (repo string, kind requestKind) {
	p := r.URL.Path
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(p, "/info/refs") && r.URL.Query().Get("service") == "git-upload-pack":
		p, kind = strings.TrimSuffix(p, "/info/refs"), advertisement
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/git-upload-pack"):
		p, kind = strings.TrimSuffix(p, "/git-upload-pack"), fetch
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/git-receive-pack"):
		p, kind = strings.TrimSuffix(p, "/git-receive-pack"), push
	case strings.HasSuffix(p, "/info/refs"):
		p = strings.TrimSuffix(p, "/info/refs")
	}
	return repoName(p), kind
}

// repoName turns a URL path into the name CreateRepo was given.
func repoName(p string) string {
	p = strings.Trim(p, "/")
	p = strings.TrimSuffix(p, "/.git")
	return strings.TrimSuffix(p, ".git")
}

func (s *GitServer) count(repo string, kind requestKind, ok bool) {
	add := func(c *GitCounts) {
		switch {
		case !ok:
			c.Denied++
		case kind == advertisement:
			c.Advertisements++
		case kind == fetch:
			c.Fetches++
		case kind == push:
			c.Pushes++
		}
	}
	add(&s.counts)
	rc := s.counts.Repos[repo]
	add(&rc)
	s.counts.Repos[repo] = rc
}

func authorized(r *http.Request, a GitServerOptions) bool {
	if a.Username == "" && a.Password == "" && a.BearerToken == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	if a.BearerToken != "" && h == "Bearer "+a.BearerToken {
		return true
	}
	if a.Username != "" || a.Password != "" {
		u, p, ok := r.BasicAuth()
		return ok && u == a.Username && p == a.Password
	}
	return false
}

// CreateRepo makes a non-bare repository at root/name with an initial empty
// history on branch main. It is served at URL()+"/"+name+"/.git".
func (s *GitServer) CreateRepo(name string) (*GitRepo, error) {
	dir := filepath.Join(s.root, filepath.FromSlash(name))
	if !strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		return nil, fmt.Errorf("git server: repository name %q escapes the root", name)
	}
	r, err := InitRepo(dir)
	if err != nil {
		return nil, err
	}
	r.URL = s.url + "/" + strings.Trim(filepath.ToSlash(name), "/") + "/.git"
	return r, nil
}

// selfSignedCert makes a CA and a leaf certificate for 127.0.0.1 signed by
// it, returning the leaf and the CA's PEM.
func selfSignedCert() (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tether test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
