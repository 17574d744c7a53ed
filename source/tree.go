package source

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// gitCommit is a commit found in a cache repository.
type gitCommit = object.Commit

func findCommit(hash plumbing.Hash, repo *git.Repository) (*gitCommit, bool) {
	c, err := repo.CommitObject(hash)
	if err != nil {
		return nil, false
	}
	// A commit without its tree (the edge of a shallow fetch of something
	// else) is not usable.
	if _, err := c.Tree(); err != nil {
		return nil, false
	}
	return c, true
}

// writeTree writes the commit's files into a temporary directory and
// renames it to dir, so a reader sees the whole tree or nothing.
func (f *Fetcher) writeTree(c *gitCommit, base, dir string) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, tmpPrefix+filepath.Base(dir)+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // no-op after a successful rename
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	tree, err := c.Tree()
	if err != nil {
		return err
	}
	var links []*object.File
	err = tree.Files().ForEach(func(file *object.File) error {
		if err := checkPath(file.Name); err != nil {
			return err
		}
		if file.Mode == filemode.Symlink {
			links = append(links, file)
			return nil
		}
		return writeFile(tmp, file)
	})
	if err != nil {
		return err
	}
	// Links last, so no file is ever written through one.
	for _, l := range links {
		if err := writeLink(tmp, l); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			return nil // another process finished the same checkout first
		}
		return err
	}
	return nil
}

// checkPath refuses tree entries that would leave the checkout or write
// into a .git directory.
func checkPath(name string) error {
	if name == "" || path.IsAbs(name) || strings.Contains(name, "\\") {
		return fmt.Errorf("unsafe path %q in tree", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." || strings.EqualFold(part, ".git") {
			return fmt.Errorf("unsafe path %q in tree", name)
		}
	}
	return nil
}

func writeFile(root string, file *object.File) error {
	p := filepath.Join(root, filepath.FromSlash(file.Name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	perm := os.FileMode(0o644)
	if file.Mode == filemode.Executable {
		perm = 0o755
	}
	r, err := file.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writeLink creates a symlink whose target stays inside the checkout.
func writeLink(root string, file *object.File) error {
	target, err := file.Contents()
	if err != nil {
		return err
	}
	resolved := path.Join(path.Dir(file.Name), target)
	if path.IsAbs(target) || resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("symlink %q points outside the repository (%q)", file.Name, target)
	}
	p := filepath.Join(root, filepath.FromSlash(file.Name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.Symlink(filepath.FromSlash(target), p); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}
