package v1alpha1

import (
	"net/url"
	"regexp"
	"strings"
)

// RedactURL returns a repository URL (spec.source.url) without its
// credentials, in the one spelling everything that leaves the cluster,
// logs or shows a URL uses: the password always, and for HTTP(S) the user
// name too, since a lone user name there is often a token
// ("https://TOKEN@host/..."). Both become "redacted", so a reader still
// sees that the URL carried credentials. SSH user names ("git@") are kept:
// they name an account, not a secret, also in Git's scp-like form
// user@host:path. A URL that does not parse loses everything between
// "://" and its last "@" (a token with an unescaped "/" or "@" is what
// breaks parsing most often); any other string is run through
// RedactString.
func RedactURL(raw string) string {
	if !strings.Contains(raw, "://") {
		// url.Parse reads "user:pass@host:path" as the scheme "user".
		return RedactString(raw)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return redactUnparsed(raw)
	}
	if u.User == nil {
		return raw
	}
	if strings.HasPrefix(strings.ToLower(u.Scheme), "http") {
		u.User = url.User("redacted")
		return u.String()
	}
	if _, hasPass := u.User.Password(); !hasPass {
		return raw
	}
	u.User = url.UserPassword(u.User.Username(), "redacted")
	return u.String()
}

// redactUnparsed redacts a URL that url.Parse refused.
func redactUnparsed(raw string) string {
	if i := strings.Index(raw, "://"); i > 0 {
		rest := raw[i+len("://"):]
		if at := strings.LastIndex(rest, "@"); at >= 0 && !strings.ContainsAny(rest[:at], " \t\r\n") {
			return raw[:i+len("://")] + "redacted" + rest[at:]
		}
	}
	return RedactString(raw)
}

var (
	// httpUserinfo is an HTTP(S) URL's userinfo: everything between the
	// scheme and the last "@" before the host, spaces excepted (a message
	// goes on after the URL).
	httpUserinfo = regexp.MustCompile(`(?i)\b(https?://)[^/?#\s]*@`)
	// anyPassword is the password of a URL of any other scheme.
	anyPassword = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://[^/?#:@\s]+):[^/?#\s]*@`)
	// scpLike is the password of Git's user:password@host:path form (no
	// scheme), which Git reads as SSH.
	scpLike = regexp.MustCompile(`(^|[\s"'(<=])([^\s"'/:@]+):(?:[^\s"'/@][^\s"'@]*)?@([^\s"'/:@]+:)`)
)

// RedactString masks the credentials of every URL inside a free-form
// message (an error, a condition message), as RedactURL does for one URL.
func RedactString(s string) string {
	s = httpUserinfo.ReplaceAllString(s, "${1}redacted@")
	s = anyPassword.ReplaceAllString(s, "${1}:redacted@")
	return scpLike.ReplaceAllString(s, "${1}${2}:redacted@${3}")
}
