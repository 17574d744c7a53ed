package source

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// maxTreeHashes bounds the answers TreeHash remembers; past it they are
// forgotten all at once (an answer costs one look into the object store).
const maxTreeHashes = 4096

// TreeHash returns the Git tree hash of the folder p (slash-separated,
// relative to the repository root; "" and "." are the root) in dir, a
// checkout that Checkout returned. The hash names everything a render of
// that folder can read, so renders are cached by it (render.Cache): a
// commit that does not touch the folder keeps its hash. It costs no
// network, and answers are remembered: a checkout never changes.
func (f *Fetcher) TreeHash(dir, p string) (string, error) {
	dir = filepath.Clean(dir)
	sha := filepath.Base(dir)
	checkouts := filepath.Dir(dir)
	base := filepath.Dir(checkouts)
	if filepath.Base(checkouts) != checkoutsDir || filepath.Dir(base) != f.cacheDir || !isFullSHA(sha) {
		return "", errors.New("tree hash: not a checkout of this cache")
	}
	p = path.Clean(strings.TrimPrefix(filepath.ToSlash(p), "./"))
	if p == ".." || strings.HasPrefix(p, "../") || path.IsAbs(p) {
		return "", fmt.Errorf("tree hash: %s is outside the repository", p)
	}
	memo := dir + "\x00" + p
	f.mu.Lock()
	h, ok := f.trees[memo]
	f.mu.Unlock()
	if ok {
		return h, nil
	}
	// Concurrent first asks (every GitSync of a repository at a new
	// commit) share one look.
	return f.treeFlight.do(context.Background(), memo, func() (string, error) {
		h, err := f.treeHash(base, plumbing.NewHash(sha), p)
		if err != nil {
			return "", err
		}
		f.mu.Lock()
		if len(f.trees) >= maxTreeHashes {
			clear(f.trees)
		}
		f.trees[memo] = h
		f.mu.Unlock()
		return h, nil
	})
}

// treeHash looks p up in the commit's tree, in whichever of the cache's
// bare repositories holds the commit. The repository lock keeps the look
// away from a fetch writing into it.
func (f *Fetcher) treeHash(base string, commit plumbing.Hash, p string) (string, error) {
	unlock := f.lockRepo(base)
	defer unlock()
	for _, name := range []string{shallowRepo, fullRepo} {
		repo, err := openBare(filepath.Join(base, name))
		if err != nil {
			return "", err
		}
		c, ok := findCommit(commit, repo)
		if !ok {
			continue
		}
		if p == "." {
			return c.TreeHash.String(), nil
		}
		tree, err := c.Tree()
		if err != nil {
			return "", err
		}
		e, err := tree.FindEntry(p)
		if err != nil {
			return "", fmt.Errorf("tree hash: %s at %s: %w", p, commit, err)
		}
		return e.Hash.String(), nil
	}
	return "", fmt.Errorf("tree hash: commit %s is not in the cache", commit)
}
