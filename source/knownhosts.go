package source

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyChecker verifies SSH host keys against known_hosts content held in
// memory (x/crypto's knownhosts only reads files). It understands plain and
// hashed (|1|salt|hash) host names, [host]:port, and @revoked (which wins
// over any other line); lines with @cert-authority are ignored.
type hostKeyChecker struct {
	entries []hostEntry
}

type hostEntry struct {
	patterns []string
	key      ssh.PublicKey
	revoked  bool
}

// hostKeyError is a host key that known_hosts does not vouch for.
type hostKeyError struct {
	host   string
	reason string
}

func (e *hostKeyError) Error() string {
	return fmt.Sprintf("host key verification failed for %s: %s", e.host, e.reason)
}

func newHostKeyChecker(data []byte) (*hostKeyChecker, error) {
	c := &hostKeyChecker{}
	rest := data
	for len(bytes.TrimSpace(rest)) > 0 {
		marker, hosts, key, _, next, err := ssh.ParseKnownHosts(rest)
		if err != nil {
			return nil, fmt.Errorf("known_hosts: %v", err)
		}
		rest = next
		if marker == "cert-authority" {
			continue
		}
		c.entries = append(c.entries, hostEntry{patterns: hosts, key: key, revoked: marker == "revoked"})
	}
	if len(c.entries) == 0 {
		return nil, errors.New("known_hosts has no host keys")
	}
	return c, nil
}

// callback is an ssh.HostKeyCallback.
func (c *hostKeyChecker) callback(hostname string, remote net.Addr, key ssh.PublicKey) error {
	names := []string{knownhosts.Normalize(hostname)}
	if remote != nil {
		if n := knownhosts.Normalize(remote.String()); n != names[0] {
			names = append(names, n)
		}
	}
	offered := key.Marshal()
	// A revoked key is refused whatever other lines say and for every host
	// (as x/crypto/ssh/knownhosts does): a plain line for the same key,
	// earlier in the file or for another name, must not win over it.
	for _, e := range c.entries {
		if e.revoked && bytes.Equal(e.key.Marshal(), offered) {
			return &hostKeyError{host: hostname, reason: "the key is marked @revoked"}
		}
	}
	known := false
	for _, e := range c.entries {
		if e.revoked || !e.matches(names) {
			continue
		}
		if bytes.Equal(e.key.Marshal(), offered) {
			return nil
		}
		known = true
	}
	if known {
		return &hostKeyError{host: hostname, reason: "the key does not match known_hosts (possible man-in-the-middle)"}
	}
	return &hostKeyError{host: hostname, reason: "the host is not in known_hosts"}
}

// algorithms lists the key types known_hosts holds for host:port, so the
// server is asked for a key we can check; nil lets the client choose.
func (c *hostKeyChecker) algorithms(host string, port int) []string {
	addr := host
	if port != 0 {
		addr = net.JoinHostPort(host, strconv.Itoa(port))
	}
	names := []string{knownhosts.Normalize(addr)}
	var algos []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			algos = append(algos, a)
		}
	}
	for _, e := range c.entries {
		if e.revoked || !e.matches(names) {
			continue
		}
		if e.key.Type() == ssh.KeyAlgoRSA {
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
		}
		add(e.key.Type())
	}
	return algos
}

func (e hostEntry) matches(names []string) bool {
	for _, p := range e.patterns {
		for _, n := range names {
			if strings.HasPrefix(p, "|1|") {
				if hashedMatch(p, n) {
					return true
				}
			} else if knownhosts.Normalize(p) == n || p == n {
				return true
			}
		}
	}
	return false
}

// hashedMatch checks a "|1|base64(salt)|base64(hmac-sha1(salt, host))"
// pattern.
func hashedMatch(pattern, host string) bool {
	parts := strings.Split(pattern, "|")
	if len(parts) != 4 {
		return false
	}
	salt, err1 := base64.StdEncoding.DecodeString(parts[2])
	want, err2 := base64.StdEncoding.DecodeString(parts[3])
	if err1 != nil || err2 != nil {
		return false
	}
	m := hmac.New(sha1.New, salt)
	m.Write([]byte(host))
	return hmac.Equal(m.Sum(nil), want)
}
