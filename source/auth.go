package source

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
)

// Auth holds the credentials for one repository. Its String, GoString,
// Format and LogValue methods never show a secret, so an Auth is safe to
// print or log by mistake.
type Auth struct {
	// Username and Password: HTTPS basic authentication.
	Username, Password string
	// BearerToken: HTTPS "Authorization: Bearer".
	BearerToken string
	// SSHPrivateKey is a PEM or OpenSSH private key, SSHPassphrase its
	// passphrase if encrypted.
	SSHPrivateKey, SSHPassphrase []byte
	// KnownHosts holds known_hosts lines for SSH hosts. SSH is refused
	// without it.
	KnownHosts []byte
	// CAData holds PEM certificates trusted for HTTPS in addition to the
	// system pool.
	CAData []byte
}

// Secret keys understood by AuthFromSecret; the same names Flux uses.
const (
	SecretUsername    = "username"
	SecretPassword    = "password"
	SecretBearerToken = "bearerToken"
	SecretIdentity    = "identity"
	SecretIdentityPub = "identity.pub"
	SecretPassphrase  = "password" // an SSH key's passphrase shares Flux's "password" key
	SecretKnownHosts  = "known_hosts"
	SecretCA          = "ca.crt"
	SecretCAFile      = "caFile"
)

// AuthFromSecret reads a Kubernetes Secret's data with Flux's key names:
// username + password (basic), bearerToken, identity (SSH private key, with
// password as its passphrase) + known_hosts, ca.crt or caFile. identity.pub
// is ignored. Half-set or conflicting combinations are errors matching
// ErrAuth; the message names keys, never values. An empty secret gives
// a nil Auth.
func AuthFromSecret(data map[string][]byte) (*Auth, error) {
	get := func(k string) []byte {
		v := data[k]
		if len(strings.TrimSpace(string(v))) == 0 {
			return nil
		}
		return v
	}
	username, password := get(SecretUsername), get(SecretPassword)
	token, identity := get(SecretBearerToken), get(SecretIdentity)
	knownHosts := get(SecretKnownHosts)
	ca := get(SecretCA)
	if ca == nil {
		ca = get(SecretCAFile)
	}
	bad := func(msg string) (*Auth, error) {
		return nil, fmt.Errorf("%w: secret: %s", ErrAuth, msg)
	}
	a := &Auth{BearerToken: string(token), KnownHosts: knownHosts, CAData: ca}
	switch {
	case identity != nil:
		if username != nil || token != nil {
			return bad("identity (SSH) cannot be combined with username or bearerToken (HTTPS)")
		}
		if knownHosts == nil {
			return bad("identity is set but known_hosts is missing; add the host's known_hosts line")
		}
		a.SSHPrivateKey, a.SSHPassphrase = identity, password
		if _, err := a.signer(); err != nil {
			return bad(err.Error())
		}
	case token != nil && (username != nil || password != nil):
		return bad("bearerToken cannot be combined with username/password; set one of them")
	case username != nil && password == nil:
		return bad("username is set but password is missing")
	case password != nil && username == nil:
		return bad("password is set but username is missing")
	default:
		a.Username, a.Password = string(username), string(password)
	}
	if ca != nil && !strings.Contains(string(ca), "-----BEGIN CERTIFICATE-----") {
		return bad("ca.crt is not a PEM certificate")
	}
	if a.isZero() {
		return nil, nil
	}
	return a, nil
}

func (a *Auth) isZero() bool {
	return a == nil || (a.Username == "" && a.Password == "" && a.BearerToken == "" &&
		len(a.SSHPrivateKey) == 0 && len(a.KnownHosts) == 0 && len(a.CAData) == 0)
}

func (a *Auth) signer() (ssh.Signer, error) {
	var s ssh.Signer
	var err error
	if len(a.SSHPassphrase) > 0 {
		s, err = ssh.ParsePrivateKeyWithPassphrase(a.SSHPrivateKey, a.SSHPassphrase)
	} else {
		s, err = ssh.ParsePrivateKey(a.SSHPrivateKey)
	}
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, errors.New("identity is encrypted; put its passphrase in password")
	case err != nil:
		// The parser's message does not contain key material.
		return nil, fmt.Errorf("identity is not a valid SSH private key: %v", err)
	}
	return s, nil
}

// method builds go-git's auth for the endpoint's protocol, refusing
// credentials that do not fit it and SSH without known_hosts.
func (a *Auth) method(ep *transport.Endpoint) (transport.AuthMethod, error) {
	isSSH := ep.Protocol == "ssh"
	switch {
	case isSSH && (a == nil || len(a.SSHPrivateKey) == 0):
		return nil, errors.New("an ssh URL needs a secret with identity (SSH private key) and known_hosts")
	case isSSH:
		if len(a.KnownHosts) == 0 {
			return nil, errors.New("known_hosts is required for SSH; refusing to trust an unknown host key")
		}
		signer, err := a.signer()
		if err != nil {
			return nil, err
		}
		hk, err := newHostKeyChecker(a.KnownHosts)
		if err != nil {
			return nil, err
		}
		user := ep.User
		if user == "" {
			user = "git"
		}
		return &gitssh.PublicKeys{User: user, Signer: signer, HostKeyCallbackHelper: gitssh.HostKeyCallbackHelper{
			HostKeyCallback:   hk.callback,
			HostKeyAlgorithms: hk.algorithms(ep.Host, ep.Port),
		}}, nil
	case a == nil:
		return nil, nil
	case len(a.SSHPrivateKey) > 0:
		return nil, fmt.Errorf("the secret has an SSH identity but the URL is %s", ep.Protocol)
	case a.BearerToken != "":
		return &githttp.TokenAuth{Token: a.BearerToken}, nil
	case a.Username != "" || a.Password != "":
		return &githttp.BasicAuth{Username: a.Username, Password: a.Password}, nil
	}
	return nil, nil
}

// caBundle is the extra CA for HTTPS, if any.
func (a *Auth) caBundle() []byte {
	if a == nil {
		return nil
	}
	return a.CAData
}

// String names the kinds of credentials present, never their values.
func (a Auth) String() string {
	var kinds []string
	if a.Username != "" || a.Password != "" {
		kinds = append(kinds, "basic")
	}
	if a.BearerToken != "" {
		kinds = append(kinds, "bearer")
	}
	if len(a.SSHPrivateKey) > 0 {
		kinds = append(kinds, "ssh-key")
	}
	if len(a.KnownHosts) > 0 {
		kinds = append(kinds, "known_hosts")
	}
	if len(a.CAData) > 0 {
		kinds = append(kinds, "ca")
	}
	if len(kinds) == 0 {
		kinds = append(kinds, "none")
	}
	return "source.Auth{" + strings.Join(kinds, ",") + " (redacted)}"
}

// GoString is String, so %#v does not dump fields.
func (a Auth) GoString() string { return a.String() }

// Format makes every verb (%v, %+v, %#v, %s, %q, ...) print String.
func (a Auth) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", a.String())
		return
	}
	_, _ = f.Write([]byte(a.String()))
}

// LogValue keeps secrets out of slog output.
func (a Auth) LogValue() slog.Value { return slog.StringValue(a.String()) }
