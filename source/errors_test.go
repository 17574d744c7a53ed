package source

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://user:pass@example.com/r.git", "https://redacted@example.com/r.git"},
		{"https://ghp_token@example.com/r.git", "https://redacted@example.com/r.git"},
		{"http://u:p@127.0.0.1:8080/r", "http://redacted@127.0.0.1:8080/r"},
		{"ssh://git@example.com/r.git", "ssh://git@example.com/r.git"},
		{"ssh://git:pw@example.com/r.git", "ssh://git:redacted@example.com/r.git"},
		{"https://example.com/r.git", "https://example.com/r.git"},
		{"git@example.com:org/r.git", "git@example.com:org/r.git"},
		// Git's scp-like form, which url.Parse reads as the scheme "alice".
		{"alice:s3cret@example.com:org/r.git", "alice:redacted@example.com:org/r.git"},
		{"alice:s3/cret@example.com:org/r.git", "alice:redacted@example.com:org/r.git"},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	msg := `Get "https://alice:hunter2@example.com/r/info/refs": dial tcp: refused; also ssh://git:pw@h/x and "bob:pw2@h:org/r.git"`
	got := RedactString(msg)
	for _, s := range []string{"alice", "hunter2", ":pw@", "pw2"} {
		if strings.Contains(got, s) {
			t.Errorf("RedactString left %q in %q", s, got)
		}
	}
}

func TestErrorMessageAndKinds(t *testing.T) {
	cause := fmt.Errorf(`Get "https://bob:pw1234@h/r/info/refs": %w`, context.DeadlineExceeded)
	err := wrap("https://bob:pw1234@h/r", "list refs", cause)
	if s := err.Error(); strings.Contains(s, "pw1234") || strings.Contains(s, "bob") ||
		!strings.HasPrefix(s, "git https://redacted@h/r: list refs: timed out") {
		t.Errorf("Error() = %q", s)
	}
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || !IsTransient(err) {
		t.Errorf("%v: want a transient ErrTimeout that still matches its cause", err)
	}
	for _, tc := range []struct {
		err       error
		transient bool
	}{
		{wrap("u", "x", ErrAuth), false},
		{wrap("u", "x", ErrRepoNotFound), false},
		{wrap("u", "x", ErrRefNotFound), false},
		{wrap("u", "x", ErrInvalidRef), false},
		{wrap("u", "x", ErrUnreachable), true},
		{wrap("u", "x", errors.New("HTTP 502")), true},
		{wrap("u", "x", context.Canceled), false},
		{nil, false},
	} {
		if got := IsTransient(tc.err); got != tc.transient {
			t.Errorf("IsTransient(%v) = %v", tc.err, got)
		}
	}
}
