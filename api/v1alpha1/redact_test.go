package v1alpha1

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://user:pass@example.com/r.git", "https://redacted@example.com/r.git"},
		{"https://oauth2:glpat-SECRET@gitlab.example.com/team/app.git", "https://redacted@gitlab.example.com/team/app.git"},
		{"https://ghp_token@example.com/r.git", "https://redacted@example.com/r.git"},
		{"HTTPS://ghp_token@example.com/r.git", "https://redacted@example.com/r.git"},
		{"http://u:p@127.0.0.1:8080/r", "http://redacted@127.0.0.1:8080/r"},
		{"https://u:p%40ss@example.com/r", "https://redacted@example.com/r"},
		{"https://u:p@ss@example.com/r", "https://redacted@example.com/r"},
		// Unparseable: an unescaped "/" in the token.
		{"https://oauth2:ab/cd@example.com/r", "https://redacted@example.com/r"},
		{"ssh://git@example.com/r.git", "ssh://git@example.com/r.git"},
		{"ssh://git:pw@example.com/r.git", "ssh://git:redacted@example.com/r.git"},
		{"https://example.com/r.git", "https://example.com/r.git"},
		{"https://example.com/r@v1.git", "https://example.com/r@v1.git"},
		{"git@example.com:org/r.git", "git@example.com:org/r.git"},
		// Git's scp-like form, which url.Parse reads as the scheme "alice".
		{"alice:s3cret@example.com:org/r.git", "alice:redacted@example.com:org/r.git"},
		{"alice:s3/cret@example.com:org/r.git", "alice:redacted@example.com:org/r.git"},
		{"", ""},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactString(t *testing.T) {
	for _, tc := range []struct {
		in     string
		want   string
		secret []string
	}{
		{
			in:     `Get "https://alice:hunter2@example.com/r/info/refs": dial tcp: refused; also ssh://git:pw@h/x`,
			want:   `Get "https://redacted@example.com/r/info/refs": dial tcp: refused; also ssh://git:redacted@h/x`,
			secret: []string{"alice", "hunter2", ":pw@"},
		},
		{
			in:     "git https://oauth2:glpat-SECRET@gitlab.example.com/a.git: fetch: authentication failed",
			want:   "git https://redacted@gitlab.example.com/a.git: fetch: authentication failed",
			secret: []string{"glpat-SECRET", "oauth2"},
		},
		{
			in:     "two: https://a:b@h1/x and http://TOKEN@h2/y",
			want:   "two: https://redacted@h1/x and http://redacted@h2/y",
			secret: []string{"TOKEN", "a:b"},
		},
		{
			in:     `clone "bob:pw2@h:org/r.git" failed`,
			want:   `clone "bob:redacted@h:org/r.git" failed`,
			secret: []string{"pw2"},
		},
		{in: "no URL here: user@example.com", want: "no URL here: user@example.com"},
		{in: "git@example.com:org/r.git", want: "git@example.com:org/r.git"},
		{in: "https://example.com/r@v1", want: "https://example.com/r@v1"},
	} {
		got := RedactString(tc.in)
		if got != tc.want {
			t.Errorf("RedactString(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
		for _, s := range tc.secret {
			if strings.Contains(got, s) {
				t.Errorf("RedactString left %q in %q", s, got)
			}
		}
	}
}
