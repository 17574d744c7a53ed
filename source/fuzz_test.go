package source

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
)

// FuzzParseRevision: ParseRevision never panics; whatever it accepts
// prints back to the same string; and every Revision with a valid SHA,
// whatever its ref, survives String then ParseRevision.
func FuzzParseRevision(f *testing.F) {
	f.Add("main@sha1:"+sha, "main", []byte("x"))
	f.Add("sha1:"+sha, "", []byte(""))
	f.Add("team@x@sha1:"+sha, "a@sha1:"+sha, []byte("y"))
	f.Add("@sha1:"+sha, "@", []byte("z"))
	f.Add("main@sha1:"+strings.ToUpper(sha), "v1.2.0", []byte("w"))
	f.Fuzz(func(t *testing.T, s, ref string, seed []byte) {
		rev, err := ParseRevision(s)
		if err == nil {
			if !isFullSHA(rev.SHA) {
				t.Fatalf("ParseRevision(%q) = %+v: SHA is not 40 lower-case hex", s, rev)
			}
			if got := rev.String(); got != s {
				t.Fatalf("ParseRevision(%q).String() = %q", s, got)
			}
		}
		sum := sha1.Sum(seed)
		want := Revision{Ref: ref, SHA: hex.EncodeToString(sum[:])}
		back, err := ParseRevision(want.String())
		if err != nil || back != want {
			t.Fatalf("ParseRevision(%q) = %+v, %v; want %+v", want.String(), back, err, want)
		}
	})
}

// FuzzRefValidate: Validate never panics; its errors are ErrInvalidRef;
// and what it accepts is safe where Checkout uses it: exactly one field,
// a commit of 40 hex digits, and a branch or tag that makes an exact
// refspec (no wildcard, no second colon) naming just that ref.
func FuzzRefValidate(f *testing.F) {
	f.Add("main", "", "", "")
	f.Add("", "v1.2.0", "", "")
	f.Add("", "", ">=1.0.0 <2.0.0", "")
	f.Add("", "", "", sha)
	f.Add("feature/x", "v1", "", "")
	f.Add("a:b", "", "", "")
	f.Add("", "x*", "", "")
	f.Add("-rf", "", "", "")
	f.Fuzz(func(t *testing.T, branch, tag, semver, commit string) {
		r := Ref{Branch: branch, Tag: tag, Semver: semver, Commit: commit}
		_ = r.String()
		err := r.Validate()
		if err != nil {
			if !errors.Is(err, ErrInvalidRef) || IsTransient(err) {
				t.Fatalf("%v: %v is not a non-transient ErrInvalidRef", r, err)
			}
			return
		}
		set := 0
		for _, v := range []string{branch, tag, semver, commit} {
			if v != "" {
				set++
			}
		}
		if set != 1 {
			t.Fatalf("%v accepted with %d fields set", r, set)
		}
		if commit != "" && !isFullSHA(strings.ToLower(commit)) {
			t.Fatalf("commit %q accepted", commit)
		}
		var full plumbing.ReferenceName
		switch {
		case branch != "":
			full = plumbing.NewBranchReferenceName(branch)
		case tag != "":
			full = plumbing.NewTagReferenceName(tag)
		default:
			return
		}
		// The refspec fetchCommit builds for it.
		spec := config.RefSpec("+" + full.String() + ":refs/tether/" + strings.TrimPrefix(full.String(), "refs/"))
		if err := spec.Validate(); err != nil || spec.IsWildcard() || spec.Src() != full.String() ||
			!spec.Match(full) || spec.Match(full+"x") {
			t.Fatalf("%v: refspec %q is not an exact match of %s (%v)", r, spec, full, err)
		}
		if strings.ContainsAny(full.String(), ":*?[\\ \t\n~^") || strings.Contains(full.String(), "..") {
			t.Fatalf("%v: ref name %q has characters Git refuses", r, full)
		}
	})
}
