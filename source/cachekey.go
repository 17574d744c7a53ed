package source

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

// repoKey names what one caller may share with others: the repository
// (its URL, normalised) as seen with one set of credentials. Listings,
// bare repositories, checkouts and in-flight fetches are all keyed by it,
// so a caller never receives what was fetched with credentials it does not
// hold.
type repoKey struct {
	url  string // normalised URL, without credentials
	cred string // credential identity, see Fetcher.credentialID
}

// listing is the key of the listing cache and of in-flight listings.
func (k repoKey) listing() string { return k.url + "\x00" + k.cred }

// dir is the name of the repository's cache folder.
func (k repoKey) dir() string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(k.listing())))
}

// repoKey parses rawURL (refusing local paths and unknown schemes) and
// keys it with the caller's credentials.
func (f *Fetcher) repoKey(rawURL string, auth *Auth) (*transport.Endpoint, repoKey, error) {
	ep, err := endpoint(rawURL)
	if err != nil {
		return nil, repoKey{}, err
	}
	return ep, repoKey{url: normalizeURL(ep), cred: f.credentialID(ep, auth)}, nil
}

// normalizeURL spells one repository one way: credentials, case of the
// scheme and host, a default port, a trailing slash or ".git" do not make
// another repository. Case of the path is kept (hosts differ on it).
func normalizeURL(ep *transport.Endpoint) string {
	port := ""
	if ep.Port != 0 && ep.Port != defaultPort(ep.Protocol) {
		port = fmt.Sprintf(":%d", ep.Port)
	}
	p := strings.TrimRight(ep.Path, "/")
	p = strings.TrimSuffix(strings.TrimSuffix(p, "/.git"), ".git")
	return strings.ToLower(ep.Protocol+"://"+ep.Host) + port + "/" + strings.TrimLeft(p, "/")
}

func defaultPort(proto string) int {
	switch proto {
	case "http":
		return 80
	case "https":
		return 443
	case "ssh":
		return 22
	}
	return 0
}

// credentialID identifies the credentials a caller presents: the Auth and
// the user name and password in the URL (go-git uses those when the Auth
// has none). It is an HMAC-SHA256 under a random key of the cache, so
// neither the credentials nor a plain hash of a guessable password is ever
// written down (folder names are visible to anyone who can list the cache).
// No credentials at all is an identity like any other.
func (f *Fetcher) credentialID(ep *transport.Endpoint, a *Auth) string {
	m := hmac.New(sha256.New, f.hashKey())
	fields := [][]byte{[]byte(ep.User), []byte(ep.Password)}
	if !a.isZero() {
		fields = append(fields, []byte(a.Username), []byte(a.Password), []byte(a.BearerToken),
			a.SSHPrivateKey, a.SSHPassphrase, a.KnownHosts, a.CAData)
	}
	for _, v := range fields {
		// Length-prefixed, so ("ab","c") and ("a","bc") differ.
		_ = binary.Write(m, binary.BigEndian, uint64(len(v)))
		m.Write(v)
	}
	return fmt.Sprintf("%x", m.Sum(nil))
}

// credentialKeyFile holds the cache's HMAC key, so that a restarted process
// finds its caches again.
const credentialKeyFile = "credential-hmac.key"

// hashKey returns the cache's HMAC key, reading or creating it once. If the
// cache folder cannot hold it, a key of this process only is used: caches
// are then not reused after a restart, which costs fetches, not safety.
func (f *Fetcher) hashKey() []byte {
	f.keyOnce.Do(func() {
		key, err := loadOrCreateKey(filepath.Join(f.cacheDir, credentialKeyFile))
		if err != nil {
			f.log.Warn("cache key not persisted; caches will not survive a restart", "error", err)
			key = make([]byte, 32)
			_, _ = rand.Read(key)
		}
		f.key = key
	})
	return f.key
}

func loadOrCreateKey(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) == 32 {
		return b, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), tmpPrefix+"key-") // mode 0600
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	// Link, not rename: of two processes starting on one cache, the first
	// key wins and the second reads it.
	err = os.Link(tmp.Name(), path)
	if errors.Is(err, fs.ErrExist) {
		if b, rerr := os.ReadFile(path); rerr == nil && len(b) == 32 {
			return b, nil
		}
		err = os.Rename(tmp.Name(), path) // a damaged key: replace it
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}
