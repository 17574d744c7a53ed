package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Layout of a repository's cache folder, cacheDir/<repoKey.dir()>/ (one
// per repository and set of credentials):
//
//	shallow.git/        bare; depth-1 fetches of branch and tag tips
//	full.git/           bare; full history, only for exact commits that the
//	                    server will not send by SHA
//	checkouts/<sha>/    one read-only tree per revision
//	checkouts/.tmp-*    trees being written (renamed into place when whole)
const (
	shallowRepo  = "shallow.git"
	fullRepo     = "full.git"
	checkoutsDir = "checkouts"
	tmpPrefix    = ".tmp-"
)

// Checkout returns a directory holding the tree of rev. First it proves
// that the caller may read the repository: a listing with the caller's
// credentials, or one made with the same credentials within
// max(ResolveTTL, a minute), as the Resolve before it did. Then a revision
// already checked out with the same credentials costs no network.
// Otherwise only that revision is fetched (depth 1 for a branch or tag; an
// exact commit is asked for by SHA and, if the server refuses, found in a
// full fetch), checked against the limits of Options and for links that
// leave it, written into a temporary directory and renamed into
// cacheDir/<key>/checkouts/<sha>. Submodules are not fetched; their folders
// stay empty, as in a clone without --recurse-submodules. The directory is
// never modified afterwards; callers must not modify it either.
// Concurrent calls for the same revision and credentials share one fetch.
// Checkouts beyond Options.KeepRevisions are removed, except any handed
// out in the last minutes.
func (f *Fetcher) Checkout(ctx context.Context, rawURL string, rev Revision, auth *Auth) (string, error) {
	if !isFullSHA(rev.SHA) {
		return "", userError(rawURL, "checkout", ErrInvalidRef, fmt.Sprintf("revision %q has no full SHA-1", rev.String()))
	}
	ep, key, err := f.repoKey(rawURL, auth)
	if err != nil {
		return "", wrap(rawURL, "checkout", err)
	}
	if err := f.proveAccess(ctx, rawURL, auth); err != nil {
		return "", err
	}
	base := filepath.Join(f.cacheDir, key.dir())
	dir := filepath.Join(base, checkoutsDir, rev.SHA)
	if f.handOut(dir) {
		return dir, nil
	}
	return f.checkoutFlight.do(ctx, base+"\x00"+rev.SHA, func() (string, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opts.Timeout)
		defer cancel()
		unlock := f.lockRepo(base)
		defer unlock()
		if f.handOut(dir) {
			return dir, nil
		}
		repo, commit, err := f.fetchCommit(ctx, rawURL, ep, key, base, rev, auth)
		if err != nil {
			return "", wrap(rawURL, "fetch "+rev.String(), err)
		}
		submodules, err := f.writeTree(repo.Storer, commit, dir)
		if err != nil {
			return "", wrap(rawURL, "checkout "+rev.String(), err)
		}
		f.checkouts.Add(1)
		f.handOut(dir)
		f.log.Info("git checkout", "url", redactedEndpoint(rawURL), "revision", rev.String(), "dir", dir)
		if len(submodules) > 0 {
			f.log.Info("git checkout: submodules skipped, their folders are empty",
				"url", redactedEndpoint(rawURL), "revision", rev.String(), "submodules", strings.Join(submodules, ","))
		}
		f.prune(filepath.Join(base, checkoutsDir), rev.SHA)
		return dir, nil
	})
}

// handOut reports whether dir is a complete checkout and, if so, records
// the hand-out in its modification time, which pruning reads.
func (f *Fetcher) handOut(dir string) bool {
	if _, err := os.Stat(dir); err != nil {
		return false
	}
	now := f.now()
	_ = os.Chtimes(dir, now, now)
	return true
}

// fetchCommit makes sure rev's commit is in one of the cache's bare
// repositories, fetching as little as the server allows, and returns it
// with the repository that holds it.
func (f *Fetcher) fetchCommit(ctx context.Context, rawURL string, ep *transport.Endpoint, key repoKey, base string, rev Revision, auth *Auth) (*git.Repository, *gitCommit, error) {
	hash := plumbing.NewHash(rev.SHA)
	shallow, err := openBare(filepath.Join(base, shallowRepo))
	if err != nil {
		return nil, nil, err
	}
	if c, ok := findCommit(hash, shallow); ok {
		return shallow, c, nil
	}
	full, err := openBare(filepath.Join(base, fullRepo))
	if err != nil {
		return nil, nil, err
	}
	if c, ok := findCommit(hash, full); ok {
		return full, c, nil
	}
	method, err := auth.method(ep)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrAuth, err)
	}
	fetch := func(repo *git.Repository, depth int, specs ...config.RefSpec) error {
		start := time.Now()
		err := git.NewRemote(repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{rawURL}}).
			FetchContext(ctx, &git.FetchOptions{
				RefSpecs: specs, Depth: depth, Auth: method, CABundle: auth.caBundle(),
				Tags: git.NoTags, Force: true,
			})
		switch {
		case errors.Is(err, git.NoErrAlreadyUpToDate):
			return nil
		case errors.Is(err, git.ErrExactSHA1NotSupported), errors.Is(err, git.NoMatchingRefSpecError{}):
			return err // decided from the advertisement; no objects asked for
		}
		f.fetches.Add(1)
		f.log.Info("git fetch", "url", redactedEndpoint(rawURL), "revision", rev.String(),
			"refspecs", fmt.Sprint(specs), "depth", depth, "duration", time.Since(start), "error", redactedError(err))
		return err
	}

	// A branch or tag: its tip, depth 1.
	if rev.Ref != "" {
		for _, name := range f.refCandidates(key, rev) {
			spec := config.RefSpec("+" + name.String() + ":refs/tether/" + strings.TrimPrefix(name.String(), "refs/"))
			err := fetch(shallow, 1, spec)
			if errors.Is(err, git.NoMatchingRefSpecError{}) {
				continue
			}
			if err != nil {
				return nil, nil, err
			}
			if c, ok := findCommit(hash, shallow); ok {
				return shallow, c, nil
			}
			break // the ref moved on since Resolve; look for the commit itself
		}
	}

	// An exact commit (or one the ref no longer points at): by SHA if the
	// server allows it, else from the full history.
	err = fetch(shallow, 1, config.RefSpec(rev.SHA+":refs/tether/commits/"+rev.SHA))
	switch {
	case err == nil:
		if c, ok := findCommit(hash, shallow); ok {
			return shallow, c, nil
		}
	case !errors.Is(err, git.ErrExactSHA1NotSupported):
		return nil, nil, err
	}
	err = fetch(full, 0, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
	if err != nil && !errors.Is(err, git.NoMatchingRefSpecError{}) {
		return nil, nil, err
	}
	if c, ok := findCommit(hash, full); ok {
		return full, c, nil
	}
	what := "commit " + rev.SHA
	if rev.Ref != "" {
		what = fmt.Sprintf("commit %s (was %s)", rev.SHA, rev.Ref)
	}
	return nil, nil, fmt.Errorf("%w: %s is not in any branch or tag of the repository", ErrRefNotFound, what)
}

// refCandidates lists the full ref names rev.Ref may be: the one a recent
// listing showed at rev.SHA, else branch then tag (tag first for names that
// look like versions).
func (f *Fetcher) refCandidates(key repoKey, rev Revision) []plumbing.ReferenceName {
	branch, tag := plumbing.NewBranchReferenceName(rev.Ref), plumbing.NewTagReferenceName(rev.Ref)
	f.mu.Lock()
	l, ok := f.listed[key.listing()]
	f.mu.Unlock()
	if ok {
		for _, r := range l.refs {
			n := r.Name()
			if r.Hash().String() != rev.SHA {
				continue
			}
			switch n {
			case branch, tag:
				return []plumbing.ReferenceName{n}
			case tag + "^{}":
				return []plumbing.ReferenceName{tag}
			}
		}
	}
	if looksLikeVersion(rev.Ref) {
		return []plumbing.ReferenceName{tag, branch}
	}
	return []plumbing.ReferenceName{branch, tag}
}

func looksLikeVersion(s string) bool {
	s = strings.TrimPrefix(s, "v")
	return s != "" && s[0] >= '0' && s[0] <= '9'
}

func openBare(path string) (*git.Repository, error) {
	repo, err := git.PlainOpen(path)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		repo, err = git.PlainInit(path, true)
	}
	if err != nil {
		return nil, fmt.Errorf("cache repository %s: %w", path, err)
	}
	return repo, nil
}
