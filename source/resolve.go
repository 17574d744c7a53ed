package source

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Resolve answers which commit ref points at, with at most one ls-remote
// and no fetch. A listing of the URL is reused for Options.ResolveTTL and
// shared by concurrent callers with the same credentials. An exact commit
// is listed too, to prove that the caller may read the repository; whether
// the commit exists is found out by Checkout.
func (f *Fetcher) Resolve(ctx context.Context, rawURL string, ref Ref, auth *Auth) (Revision, error) {
	if err := ref.Validate(); err != nil {
		return Revision{}, wrap(rawURL, "resolve", err)
	}
	refs, err := f.list(ctx, rawURL, auth, f.opts.ResolveTTL)
	if err != nil {
		return Revision{}, err
	}
	if ref.Commit != "" {
		return Revision{SHA: strings.ToLower(ref.Commit)}, nil
	}
	rev, err := pick(refs, ref)
	if err != nil {
		return Revision{}, wrap(rawURL, "resolve "+ref.String(), err)
	}
	return rev, nil
}

// list returns the remote's refs as the caller's credentials see them:
// from the cache if a listing with the same credentials is younger than
// maxAge, else from the server. A listing that fails is not cached, so an
// error here is also the proof that the caller may not read the repository.
func (f *Fetcher) list(ctx context.Context, rawURL string, auth *Auth, maxAge time.Duration) ([]*plumbing.Reference, error) {
	_, rk, err := f.repoKey(rawURL, auth)
	if err != nil {
		return nil, wrap(rawURL, "list refs", err)
	}
	key := rk.listing()
	f.mu.Lock()
	l, ok := f.listed[key]
	gen := f.forgotten[rk.url]
	f.mu.Unlock()
	if ok && f.now().Sub(l.at) < maxAge {
		return l.refs, nil
	}
	// The flight is per Forget generation: a call after a Forget never
	// joins a listing that began before it (and may predate a push).
	refs, err := f.resolveFlight.do(ctx, fmt.Sprintf("%s\x00%d", key, gen), func() ([]*plumbing.Reference, error) {
		// A flight that ended between the look above and this one stored
		// a listing made after this call began: share it, as if the call
		// had joined that flight.
		f.mu.Lock()
		newer, ok := f.listed[key]
		f.mu.Unlock()
		if ok && newer.gen == gen && newer.at.After(l.at) {
			return newer.refs, nil
		}
		refs, err := f.listRemote(ctx, rawURL, auth)
		if err != nil {
			return nil, err
		}
		// Stored before the flight ends, so that a caller arriving after
		// it ended finds it; not stored if a Forget came meanwhile.
		f.mu.Lock()
		if f.forgotten[rk.url] == gen {
			f.listed[key] = listing{refs: refs, at: f.now(), gen: gen}
		}
		f.mu.Unlock()
		return refs, nil
	})
	if err != nil {
		return nil, wrap(rawURL, "list refs", err)
	}
	return refs, nil
}

// proveAccess lists the repository with the caller's credentials (or finds
// a recent listing made with the same credentials) before Checkout serves
// anything cached: credentials that were revoked on the host, or never
// granted, get the host's answer, not a tree.
func (f *Fetcher) proveAccess(ctx context.Context, rawURL string, auth *Auth) error {
	_, err := f.list(ctx, rawURL, auth, max(f.opts.ResolveTTL, accessProofAge))
	return err
}

func (f *Fetcher) listRemote(ctx context.Context, rawURL string, auth *Auth) ([]*plumbing.Reference, error) {
	ep, err := endpoint(rawURL)
	if err != nil {
		return nil, err
	}
	method, err := auth.method(ep)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAuth, err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opts.Timeout)
	defer cancel()
	start := time.Now()
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{rawURL}})
	f.listings.Add(1)
	refs, err := remote.ListContext(ctx, &git.ListOptions{
		Auth:          method,
		CABundle:      auth.caBundle(),
		PeelingOption: git.AppendPeeled,
	})
	if err != nil {
		return nil, err
	}
	f.log.Debug("git ls-remote", "url", redactedEndpoint(rawURL), "refs", len(refs), "duration", time.Since(start))
	return refs, nil
}

// pick finds the revision for ref among listed refs. Annotated tags resolve
// to the commit they point at (the peeled "^{}" entry).
func pick(refs []*plumbing.Reference, ref Ref) (Revision, error) {
	byName := make(map[plumbing.ReferenceName]plumbing.Hash, len(refs))
	for _, r := range refs {
		if r.Type() == plumbing.HashReference {
			byName[r.Name()] = r.Hash()
		}
	}
	commitOf := func(name plumbing.ReferenceName) (string, bool) {
		if h, ok := byName[name+"^{}"]; ok {
			return h.String(), true
		}
		h, ok := byName[name]
		return h.String(), ok
	}
	switch {
	case ref.Branch != "":
		if sha, ok := commitOf(plumbing.NewBranchReferenceName(ref.Branch)); ok {
			return Revision{Ref: ref.Branch, SHA: sha}, nil
		}
		return Revision{}, fmt.Errorf("%w: branch %q does not exist%s", ErrRefNotFound, ref.Branch, sample(" (branches: %s)", names(refs, "refs/heads/")))
	case ref.Tag != "":
		if sha, ok := commitOf(plumbing.NewTagReferenceName(ref.Tag)); ok {
			return Revision{Ref: ref.Tag, SHA: sha}, nil
		}
		return Revision{}, fmt.Errorf("%w: tag %q does not exist%s", ErrRefNotFound, ref.Tag, sample(" (tags: %s)", names(refs, "refs/tags/")))
	case ref.Semver != "":
		tag, err := newestMatching(names(refs, "refs/tags/"), ref.Semver)
		if err != nil {
			return Revision{}, err
		}
		sha, _ := commitOf(plumbing.NewTagReferenceName(tag))
		return Revision{Ref: tag, SHA: sha}, nil
	}
	return Revision{}, fmt.Errorf("%w: %s", ErrInvalidRef, ref)
}

// newestMatching returns the tag with the highest version inside the range.
// Tags that are not versions are skipped; "v1.2.0" and "1.2.0" both count,
// and of two equal versions the lexically smaller tag wins, so the answer
// does not depend on listing order.
func newestMatching(tags []string, rng string) (string, error) {
	c, err := semver.NewConstraint(rng)
	if err != nil {
		return "", fmt.Errorf("%w: semver range %q: %v", ErrInvalidRef, rng, err)
	}
	type version struct {
		tag string
		v   *semver.Version
	}
	var versions []version
	for _, t := range tags {
		if v, err := semver.NewVersion(t); err == nil {
			versions = append(versions, version{t, v})
		}
	}
	sort.Slice(versions, func(i, j int) bool {
		if c := versions[i].v.Compare(versions[j].v); c != 0 {
			return c > 0
		}
		return versions[i].tag < versions[j].tag
	})
	for _, v := range versions {
		if c.Check(v.v) {
			return v.tag, nil
		}
	}
	newest := make([]string, len(versions))
	for i, v := range versions {
		newest[i] = v.tag
	}
	return "", fmt.Errorf("%w: no tag matches semver range %q%s", ErrRefNotFound, rng, sample(" (newest version tags: %s)", newest))
}

// names lists the short names under prefix, sorted, without peeled entries.
func names(refs []*plumbing.Reference, prefix string) []string {
	var out []string
	for _, r := range refs {
		n := r.Name().String()
		if strings.HasPrefix(n, prefix) && !strings.HasSuffix(n, "^{}") {
			out = append(out, strings.TrimPrefix(n, prefix))
		}
	}
	sort.Strings(out)
	return out
}

// sample formats the first few names for an error message; "" when none.
func sample(format string, list []string) string {
	const max = 5
	if len(list) == 0 {
		return " (none exist)"
	}
	s := strings.Join(list[:min(len(list), max)], ", ")
	if len(list) > max {
		s += fmt.Sprintf(", … %d more", len(list)-max)
	}
	return fmt.Sprintf(format, s)
}
