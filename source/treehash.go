package source

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
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
		h, seen, err := f.treeHash(base, plumbing.NewHash(sha), p)
		if err != nil {
			return "", err
		}
		f.mu.Lock()
		if len(f.trees)+len(seen) >= maxTreeHashes {
			clear(f.trees)
		}
		// Every folder the look passed by is remembered: the GitSyncs of
		// one repository mostly ask for siblings (a thousand folders at
		// the root cost one look, not a thousand, each loading the
		// repository's pack index again).
		for q, sh := range seen {
			if len(f.trees) < maxTreeHashes {
				f.trees[dir+"\x00"+q] = sh
			}
		}
		f.trees[memo] = h
		f.mu.Unlock()
		return h, nil
	})
}

// treeHash looks p up in the commit's tree, in whichever of the cache's
// bare repositories holds the commit, and returns its hash with those of
// every folder in the trees it read on the way (by slash path, "." the
// root). The repository lock keeps the look away from a fetch writing into
// it.
func (f *Fetcher) treeHash(base string, commit plumbing.Hash, p string) (string, map[string]string, error) {
	unlock := f.lockRepo(base)
	defer unlock()
	f.treeLooks.Add(1)
	for _, name := range []string{shallowRepo, fullRepo} {
		repo, err := openBare(filepath.Join(base, name))
		if err != nil {
			return "", nil, err
		}
		c, ok := findCommit(commit, repo)
		if !ok {
			continue
		}
		seen := map[string]string{".": c.TreeHash.String()}
		if p == "." {
			return c.TreeHash.String(), seen, nil
		}
		tree, err := c.Tree()
		if err != nil {
			return "", nil, err
		}
		parts := strings.Split(p, "/")
		for i, part := range parts {
			prefix := path.Join(parts[:i]...)
			var found *object.TreeEntry
			for j := range tree.Entries {
				e := &tree.Entries[j]
				if e.Mode == filemode.Dir {
					seen[path.Join(prefix, e.Name)] = e.Hash.String()
				}
				if e.Name == part {
					found = e
				}
			}
			switch {
			case found == nil:
				return "", nil, fmt.Errorf("tree hash: %s at %s: %w", p, commit, object.ErrEntryNotFound)
			case i == len(parts)-1:
				return found.Hash.String(), seen, nil
			case found.Mode != filemode.Dir:
				return "", nil, fmt.Errorf("tree hash: %s at %s: %w", p, commit, object.ErrDirectoryNotFound)
			}
			if tree, err = object.GetTree(repo.Storer, found.Hash); err != nil {
				return "", nil, fmt.Errorf("tree hash: %s at %s: %w", p, commit, err)
			}
		}
	}
	return "", nil, fmt.Errorf("tree hash: commit %s is not in the cache", commit)
}
