package source

import (
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/go-git/go-git/v5/plumbing"
)

// Ref names what to follow in a repository. Exactly one field is set.
type Ref struct {
	// Branch follows the tip of a branch, e.g. "main".
	Branch string
	// Tag pins a tag, e.g. "v1.2.0".
	Tag string
	// Semver follows the newest tag matching a range, e.g. ">=1.2.0 <2.0.0"
	// or "~1.4" (Masterminds/semver constraint syntax).
	Semver string
	// Commit pins a full 40-character SHA-1.
	Commit string
}

// Validate reports a user error when the ref is empty, sets more than one
// field, or a field is malformed. Errors match ErrInvalidRef.
func (r Ref) Validate() error {
	set := 0
	for _, v := range []string{r.Branch, r.Tag, r.Semver, r.Commit} {
		if v != "" {
			set++
		}
	}
	switch {
	case set == 0:
		return fmt.Errorf("%w: set one of branch, tag, semver or commit", ErrInvalidRef)
	case set > 1:
		return fmt.Errorf("%w: %s: set only one of branch, tag, semver or commit", ErrInvalidRef, r)
	case r.Branch != "":
		return validateRefName("branch", r.Branch, plumbing.NewBranchReferenceName(r.Branch))
	case r.Tag != "":
		return validateRefName("tag", r.Tag, plumbing.NewTagReferenceName(r.Tag))
	case r.Semver != "":
		if _, err := semver.NewConstraint(r.Semver); err != nil {
			return fmt.Errorf("%w: semver range %q: %v", ErrInvalidRef, r.Semver, err)
		}
	case !isFullSHA(strings.ToLower(r.Commit)):
		return fmt.Errorf("%w: commit %q is not a full 40-character hexadecimal SHA-1", ErrInvalidRef, r.Commit)
	}
	return nil
}

func validateRefName(kind, short string, full plumbing.ReferenceName) error {
	if strings.HasPrefix(short, "refs/") {
		return fmt.Errorf("%w: %s %q: give the short name, without refs/", ErrInvalidRef, kind, short)
	}
	if err := full.Validate(); err != nil {
		return fmt.Errorf("%w: %s %q is not a valid Git ref name", ErrInvalidRef, kind, short)
	}
	return nil
}

// String describes the ref for messages, e.g. `branch "main"`.
func (r Ref) String() string {
	var parts []string
	add := func(kind, v string) {
		if v != "" {
			parts = append(parts, fmt.Sprintf("%s %q", kind, v))
		}
	}
	add("branch", r.Branch)
	add("tag", r.Tag)
	add("semver", r.Semver)
	add("commit", r.Commit)
	if len(parts) == 0 {
		return "empty ref"
	}
	return strings.Join(parts, ", ")
}

// Revision is one commit that a ref resolved to.
type Revision struct {
	// Ref is the branch or tag name that pointed at SHA (for a semver range,
	// the chosen tag); empty for an exact commit.
	Ref string
	// SHA is the full, lower-case commit SHA-1.
	SHA string
}

const sha1Prefix = "sha1:"

// String is the revision as status, reports and badges show it:
// "main@sha1:<40 hex>", "v1.2.0@sha1:<40 hex>", or "sha1:<40 hex>" for an
// exact commit.
func (r Revision) String() string {
	if r.Ref == "" {
		return sha1Prefix + r.SHA
	}
	return r.Ref + "@" + sha1Prefix + r.SHA
}

// ShortSHA is the first 7 characters of the SHA.
func (r Revision) ShortSHA() string {
	if len(r.SHA) < 7 {
		return r.SHA
	}
	return r.SHA[:7]
}

// IsZero reports whether the revision is empty.
func (r Revision) IsZero() bool { return r == Revision{} }

// ParseRevision parses the output of Revision.String.
func ParseRevision(s string) (Revision, error) {
	var rev Revision
	hash := s
	if i := strings.LastIndex(s, "@"+sha1Prefix); i >= 0 {
		rev.Ref, hash = s[:i], s[i+1:]
		if rev.Ref == "" {
			return Revision{}, fmt.Errorf("revision %q: empty ref before @", s)
		}
	}
	if !strings.HasPrefix(hash, sha1Prefix) {
		return Revision{}, fmt.Errorf("revision %q: want <ref>@sha1:<40 hex> or sha1:<40 hex>", s)
	}
	rev.SHA = strings.TrimPrefix(hash, sha1Prefix)
	if !isFullSHA(rev.SHA) {
		return Revision{}, fmt.Errorf("revision %q: %q is not a 40-character lower-case hexadecimal SHA-1", s, rev.SHA)
	}
	return rev, nil
}

func isFullSHA(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
