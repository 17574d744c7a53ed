package source

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

func TestRefValidate(t *testing.T) {
	for _, tc := range []struct {
		ref     Ref
		wantErr string // substring; "" means valid
	}{
		{Ref{Branch: "main"}, ""},
		{Ref{Branch: "feature/x"}, ""},
		{Ref{Tag: "v1.2.0"}, ""},
		{Ref{Semver: ">=1.0.0 <2.0.0"}, ""},
		{Ref{Semver: "~1.4"}, ""},
		{Ref{Commit: sha}, ""},
		{Ref{Commit: strings.ToUpper(sha)}, ""},
		{Ref{}, "set one of branch, tag, semver or commit"},
		{Ref{Branch: "main", Tag: "v1"}, "set only one"},
		{Ref{Branch: "refs/heads/main"}, "without refs/"},
		{Ref{Branch: "a..b"}, "not a valid Git ref name"},
		{Ref{Tag: "v1 2"}, "not a valid Git ref name"},
		{Ref{Semver: "not a range"}, `semver range "not a range"`},
		{Ref{Commit: "abc123"}, "full 40-character"},
		{Ref{Commit: strings.Repeat("g", 40)}, "full 40-character"},
	} {
		err := tc.ref.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%v: unexpected error %v", tc.ref, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%v: error %v, want it to contain %q", tc.ref, err, tc.wantErr)
		case err != nil && (!errors.Is(err, ErrInvalidRef) || IsTransient(err)):
			t.Errorf("%v: %v should be a non-transient ErrInvalidRef", tc.ref, err)
		}
	}
}

func TestRevisionString(t *testing.T) {
	for _, tc := range []struct {
		rev  Revision
		want string
	}{
		{Revision{Ref: "main", SHA: sha}, "main@sha1:" + sha},
		{Revision{Ref: "v1.2.0", SHA: sha}, "v1.2.0@sha1:" + sha},
		{Revision{Ref: "team@x", SHA: sha}, "team@x@sha1:" + sha},
		{Revision{SHA: sha}, "sha1:" + sha},
	} {
		if got := tc.rev.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
		back, err := ParseRevision(tc.want)
		if err != nil {
			t.Errorf("ParseRevision(%q): %v", tc.want, err)
		}
		if diff := cmp.Diff(tc.rev, back); diff != "" {
			t.Errorf("ParseRevision(%q) (-want +got):\n%s", tc.want, diff)
		}
	}
	if got := (Revision{SHA: sha}).ShortSHA(); got != "0123456" {
		t.Errorf("ShortSHA = %q", got)
	}
}

func TestParseRevisionErrors(t *testing.T) {
	for _, s := range []string{
		"", "main", "main@" + sha, "main@sha1:abc", "@sha1:" + sha,
		"sha1:" + strings.ToUpper(sha), "main/" + sha, "sha256:" + sha,
	} {
		if rev, err := ParseRevision(s); err == nil {
			t.Errorf("ParseRevision(%q) = %+v, want an error", s, rev)
		}
	}
}

func TestNewestMatching(t *testing.T) {
	tags := []string{"v1.0.0", "v1.1.0", "1.2.0", "v1.2.1-rc.1", "v2.0.0", "latest", "v0.9.0", "release-3"}
	for _, tc := range []struct {
		rng, want, wantErr string
	}{
		{">=1.0.0 <2.0.0", "1.2.0", ""},
		{"~1.1", "v1.1.0", ""},
		{"^1", "1.2.0", ""},
		{"*", "v2.0.0", ""},
		{">=1.2.1-0 <1.3.0", "v1.2.1-rc.1", ""},
		{"<1.0.0", "v0.9.0", ""},
		{">=3.0.0", "", `no tag matches semver range ">=3.0.0" (newest version tags: v2.0.0, v1.2.1-rc.1, 1.2.0, v1.1.0, v1.0.0, … 1 more)`},
	} {
		got, err := newestMatching(tags, tc.rng)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrRefNotFound) {
				t.Errorf("%q: error %v, want ErrRefNotFound containing %q", tc.rng, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.rng, got, err, tc.want)
		}
	}
	// Equal versions: the answer does not depend on listing order.
	for _, order := range [][]string{{"v1.0.0", "1.0.0"}, {"1.0.0", "v1.0.0"}} {
		if got, _ := newestMatching(order, "1.x"); got != "1.0.0" {
			t.Errorf("%v: got %q", order, got)
		}
	}
}
