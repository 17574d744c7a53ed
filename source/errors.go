package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"syscall"

	"github.com/go-git/go-git/v5/plumbing/transport"

	"tether.dev/tether/api/v1alpha1"
)

// Kinds of failure, matched with errors.Is. Every error from a Fetcher
// carries the (redacted) URL and one of these when it is known.
var (
	// ErrAuth: the host refused the credentials (HTTP 401/403, SSH
	// authentication); the credentials are malformed or do not fit the URL;
	// or the server's identity could not be verified (SSH host key not in
	// known_hosts, TLS certificate not trusted). A user error.
	ErrAuth = errors.New("authentication failed")
	// ErrRepoNotFound: no repository at the URL. A user error.
	ErrRepoNotFound = errors.New("repository not found")
	// ErrRefNotFound: the branch or tag does not exist, no tag matches the
	// semver range, or the commit is not in the repository. A user error.
	ErrRefNotFound = errors.New("ref not found")
	// ErrInvalidRef: the ref or the credentials are malformed. A user error.
	ErrInvalidRef = errors.New("invalid ref")
	// ErrTimeout: the operation did not finish within Options.Timeout or the
	// caller's deadline. Transient.
	ErrTimeout = errors.New("timed out")
	// ErrUnreachable: connection refused, host unknown, network down.
	// Transient.
	ErrUnreachable = errors.New("host unreachable")
	// ErrTooLarge: a file, the whole checkout or its number of entries is
	// over a limit of Options (MaxFileSize, MaxCheckoutSize, MaxFiles). A
	// user error: the same commit will always be too large.
	ErrTooLarge = errors.New("tree too large")
	// ErrUnsafeTree: the commit's tree has a path or a symbolic link that
	// would leave the checkout, or entries that collide. A user error.
	ErrUnsafeTree = errors.New("unsafe tree")
)

// Error is a failed Git operation on one repository.
type Error struct {
	// URL is the repository URL with any credentials removed.
	URL string
	// Op is what was being done: "list refs", "fetch", "checkout", ...
	Op string
	// Kind is one of the Err* values, or nil when the cause is unknown.
	Kind error
	// Err is the underlying error.
	Err error
}

// Error leads with the URL; credentials in the underlying message are
// masked.
func (e *Error) Error() string {
	parts := []string{"git " + e.URL}
	if e.Op != "" {
		parts = append(parts, e.Op)
	}
	if e.Kind != nil {
		parts = append(parts, e.Kind.Error())
	}
	if e.Err != nil {
		parts = append(parts, strings.Split(e.Err.Error(), ": ")...)
	}
	// Causes often repeat their kind ("ref not found: ref not found: ...");
	// say each thing once.
	out := parts[:1]
	for _, p := range parts[1:] {
		if p != out[len(out)-1] {
			out = append(out, p)
		}
	}
	return RedactString(strings.Join(out, ": "))
}

// Unwrap returns the kind and the cause, so errors.Is matches both.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// IsTransient reports whether retrying the same operation later can help.
// Bad credentials, a missing repository or ref, a malformed ref and a tree
// that is too large or unsafe are user errors and are not transient; timeouts, unreachable hosts and unknown
// failures (e.g. an HTTP 500) are. A cancelled context is not.
func IsTransient(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrAuth), errors.Is(err, ErrRepoNotFound),
		errors.Is(err, ErrRefNotFound), errors.Is(err, ErrInvalidRef),
		errors.Is(err, ErrTooLarge), errors.Is(err, ErrUnsafeTree):
		return false
	case errors.Is(err, context.Canceled):
		return false
	}
	return true
}

// wrap classifies err and returns it as an *Error for rawURL.
func wrap(rawURL, op string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{URL: RedactURL(rawURL), Op: op, Kind: classify(err), Err: err}
}

// userError is an *Error of a known kind with a message of ours.
func userError(rawURL, op string, kind error, msg string) error {
	return &Error{URL: RedactURL(rawURL), Op: op, Kind: kind, Err: errors.New(msg)}
}

func classify(err error) error {
	for _, k := range []error{ErrAuth, ErrRepoNotFound, ErrRefNotFound, ErrInvalidRef, ErrTooLarge, ErrUnsafeTree, ErrTimeout, ErrUnreachable} {
		if errors.Is(err, k) {
			return k
		}
	}
	var hk *hostKeyError
	var dns *net.DNSError
	var ne net.Error
	var unknownCA x509.UnknownAuthorityError
	var badCert x509.CertificateInvalidError
	var badHost x509.HostnameError
	var tlsVerify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &hk), errors.As(err, &unknownCA), errors.As(err, &badCert),
		errors.As(err, &badHost), errors.As(err, &tlsVerify):
		return ErrAuth
	case errors.Is(err, transport.ErrAuthenticationRequired),
		errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrInvalidAuthMethod):
		return ErrAuth
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return ErrRepoNotFound
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return ErrRefNotFound
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return ErrTimeout
	case errors.As(err, &dns):
		if dns.IsTimeout {
			return ErrTimeout
		}
		return ErrUnreachable
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ECONNRESET):
		return ErrUnreachable
	case errors.As(err, &ne) && ne.Timeout():
		return ErrTimeout
	}
	// The SSH client reports authentication and host key failures as text.
	msg := err.Error()
	switch {
	case strings.Contains(msg, "ssh: unable to authenticate"),
		strings.Contains(msg, "ssh: handshake failed: knownhosts"):
		return ErrAuth
	case strings.Contains(msg, "not our ref"):
		return ErrRefNotFound // a commit asked for by SHA that the server does not have
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "no such host"):
		return ErrUnreachable
	}
	return nil
}

// RedactURL removes credentials from a URL: the one spelling everything
// Tether logs or sends uses (v1alpha1.RedactURL).
func RedactURL(raw string) string { return v1alpha1.RedactURL(raw) }

// RedactString masks credentials of every URL inside a free-form message
// (v1alpha1.RedactString).
func RedactString(s string) string { return v1alpha1.RedactString(s) }

// redactedError is err's message with credentials masked, for a log field
// (go-git's errors may carry the URL with its user name); "" for nil.
func redactedError(err error) string {
	if err == nil {
		return ""
	}
	return RedactString(err.Error())
}
