package source

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
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

const (
	// maxLinkTarget is Linux's PATH_MAX: no longer target can be followed.
	maxLinkTarget = 4096
	// maxLinkHops is Linux's limit of links followed in one path lookup.
	maxLinkHops = 40
)

// blobEntry is a file of the tree, found without reading its content.
type blobEntry struct {
	name string // slash path inside the repository
	mode filemode.FileMode
	hash plumbing.Hash
	size int64
}

// treePlan is what writeTree will write. It is made, and checked against
// every limit, before the first byte lands on disk and before any file's
// content is read.
type treePlan struct {
	files      []blobEntry
	links      map[string]string // path -> target
	linkOrder  []string
	submodules []string
}

// writeTree writes the commit's files into a temporary directory and
// renames it to dir, so a reader sees the whole tree or nothing; on any
// error nothing of it stays. It returns the paths of the submodules it
// left empty.
func (f *Fetcher) writeTree(s storer.EncodedObjectStorer, c *gitCommit, dir string) ([]string, error) {
	tree, err := object.GetTree(s, c.TreeHash)
	if err != nil {
		return nil, err
	}
	plan, err := f.planTree(s, tree)
	if err != nil {
		return nil, err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(parent, tmpPrefix+filepath.Base(dir)+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // no-op after a successful rename
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	for _, e := range plan.files {
		if err := writeFile(s, tmp, e, f.opts.MaxFileSize); err != nil {
			return nil, err
		}
	}
	for _, name := range plan.submodules {
		if err := os.MkdirAll(filepath.Join(tmp, filepath.FromSlash(name)), 0o755); err != nil {
			return nil, err
		}
	}
	// Links last, so no file is ever written through one.
	for _, name := range plan.linkOrder {
		p := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.Symlink(filepath.FromSlash(plan.links[name]), p); err != nil {
			return nil, fmt.Errorf("symlink %q: %w", name, err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			return plan.submodules, nil // another process finished the same checkout first
		}
		return nil, err
	}
	return plan.submodules, nil
}

// planTree walks the tree reading only tree objects, the headers of blobs
// (for their sizes) and the targets of links, and refuses a tree that is
// over a limit of Options, has a path or a link that leaves the checkout,
// or entries that collide.
func (f *Fetcher) planTree(s storer.EncodedObjectStorer, root *object.Tree) (*treePlan, error) {
	p := &treePlan{links: map[string]string{}}
	seen := map[string]bool{}
	var total int64
	var walk func(t *object.Tree, prefix string) error
	walk = func(t *object.Tree, prefix string) error {
		for _, e := range t.Entries {
			name := e.Name
			if prefix != "" {
				name = prefix + "/" + e.Name
			}
			if err := checkPath(name); err != nil {
				return err
			}
			if seen[name] {
				return fmt.Errorf("%w: path %q appears twice in the tree", ErrUnsafeTree, name)
			}
			seen[name] = true
			if len(seen) > f.opts.MaxFiles {
				return fmt.Errorf("%w: %q is entry %d of the tree, over the limit of %d files and directories per checkout",
					ErrTooLarge, name, len(seen), f.opts.MaxFiles)
			}
			switch e.Mode {
			case filemode.Dir:
				sub, err := object.GetTree(s, e.Hash)
				if err != nil {
					return fmt.Errorf("directory %q: %w", name, err)
				}
				if err := walk(sub, name); err != nil {
					return err
				}
				continue
			case filemode.Submodule:
				// A gitlink names a commit of another repository; like Flux
				// without recurseSubmodules, it is never fetched.
				p.submodules = append(p.submodules, name)
				continue
			case filemode.Regular, filemode.Deprecated, filemode.Executable, filemode.Symlink:
			default:
				return fmt.Errorf("%w: %q has an unknown file mode %v", ErrUnsafeTree, name, e.Mode)
			}
			size, err := objectSize(s, e.Hash)
			if err != nil {
				return fmt.Errorf("file %q: %w", name, err)
			}
			if size > f.opts.MaxFileSize {
				return fmt.Errorf("%w: file %q is %s, over the limit of %s per file",
					ErrTooLarge, name, formatSize(size), formatSize(f.opts.MaxFileSize))
			}
			total += size
			if total > f.opts.MaxCheckoutSize {
				return fmt.Errorf("%w: file %q brings the checkout to %s, over the limit of %s per checkout",
					ErrTooLarge, name, formatSize(total), formatSize(f.opts.MaxCheckoutSize))
			}
			if e.Mode == filemode.Symlink {
				target, err := readLink(s, name, e.Hash, size)
				if err != nil {
					return err
				}
				p.links[name] = target
				p.linkOrder = append(p.linkOrder, name)
				continue
			}
			p.files = append(p.files, blobEntry{name: name, mode: e.Mode, hash: e.Hash, size: size})
		}
		return nil
	}
	if err := walk(root, ""); err != nil {
		return nil, err
	}
	for _, name := range p.linkOrder {
		if err := p.checkLink(name); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// objectSize reads an object's size from its header, without inflating
// the object (go-git's file storage does so for packed and loose objects).
func objectSize(s storer.EncodedObjectStorer, h plumbing.Hash) (int64, error) {
	if sizer, ok := s.(interface {
		EncodedObjectSize(plumbing.Hash) (int64, error)
	}); ok {
		return sizer.EncodedObjectSize(h)
	}
	obj, err := s.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return 0, err
	}
	return obj.Size(), nil
}

// readLink returns a link's target, refusing targets no system could
// follow. The error names the link, never its target: the target may name
// a place outside the repository.
func readLink(s storer.EncodedObjectStorer, name string, h plumbing.Hash, size int64) (string, error) {
	if size == 0 || size > maxLinkTarget {
		return "", fmt.Errorf("%w: symlink %q has an empty or over-long target", ErrUnsafeTree, name)
	}
	blob, err := object.GetBlob(s, h)
	if err != nil {
		return "", fmt.Errorf("symlink %q: %w", name, err)
	}
	r, err := blob.Reader()
	if err != nil {
		return "", fmt.Errorf("symlink %q: %w", name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, maxLinkTarget+1))
	if err != nil {
		return "", fmt.Errorf("symlink %q: %w", name, err)
	}
	if len(b) == 0 || len(b) > maxLinkTarget || strings.ContainsRune(string(b), 0) {
		return "", fmt.Errorf("%w: symlink %q has an empty or invalid target", ErrUnsafeTree, name)
	}
	return string(b), nil
}

var (
	errLinkEscapes = errors.New("escapes")
	errLinkLoop    = errors.New("loop")
)

// checkLink follows the link at name as the kernel would, through every
// other link of the tree, and refuses it if any step leaves the checkout
// (an absolute target, "..", or a chain such as a -> b/.. with b -> ..), or
// if the chain does not end. The message names the link only.
func (p *treePlan) checkLink(name string) error {
	hops := 0
	dir := strings.Split(path.Dir(name), "/")
	if path.Dir(name) == "." {
		dir = nil
	}
	_, err := p.follow(dir, p.links[name], &hops)
	switch {
	case errors.Is(err, errLinkEscapes):
		return fmt.Errorf("%w: symlink %q points outside the repository", ErrUnsafeTree, name)
	case errors.Is(err, errLinkLoop):
		return fmt.Errorf("%w: symlink %q: too many levels of symbolic links", ErrUnsafeTree, name)
	}
	return err
}

// follow resolves target from the directory dir (components below the
// checkout's root) and returns where it lands. hops counts every link
// followed on the way, so that neither a loop nor a fan-out of links
// (l1 -> l0/l0, l2 -> l1/l1, ...) can make it run long.
func (p *treePlan) follow(dir []string, target string, hops *int) ([]string, error) {
	if *hops++; *hops > maxLinkHops {
		return nil, errLinkLoop
	}
	if strings.HasPrefix(target, "/") {
		return nil, errLinkEscapes
	}
	cur := slices.Clip(dir)
	for _, part := range strings.Split(target, "/") {
		switch part {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return nil, errLinkEscapes
			}
			cur = slices.Clip(cur[:len(cur)-1])
			continue
		}
		next := append(cur, part)
		if t, ok := p.links[strings.Join(next, "/")]; ok {
			resolved, err := p.follow(cur, t, hops)
			if err != nil {
				return nil, err
			}
			cur = slices.Clip(resolved)
			continue
		}
		cur = slices.Clip(next)
	}
	return cur, nil
}

// checkPath refuses tree entries that would leave the checkout or write
// into a .git directory.
func checkPath(name string) error {
	if name == "" || path.IsAbs(name) || strings.Contains(name, "\\") || strings.ContainsRune(name, 0) {
		return fmt.Errorf("%w: unsafe path %q in tree", ErrUnsafeTree, name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." || strings.EqualFold(part, ".git") {
			return fmt.Errorf("%w: unsafe path %q in tree", ErrUnsafeTree, name)
		}
	}
	return nil
}

// writeFile copies one blob, stopping at limit even if the object's header
// understated its size.
func writeFile(s storer.EncodedObjectStorer, root string, e blobEntry, limit int64) error {
	p := filepath.Join(root, filepath.FromSlash(e.name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	perm := os.FileMode(0o644)
	if e.mode == filemode.Executable {
		perm = 0o755
	}
	blob, err := object.GetBlob(s, e.hash)
	if err != nil {
		return fmt.Errorf("file %q: %w", e.name, err)
	}
	r, err := blob.Reader()
	if err != nil {
		return fmt.Errorf("file %q: %w", e.name, err)
	}
	defer r.Close()
	out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, io.LimitReader(r, limit+1))
	if err == nil && n > limit {
		err = fmt.Errorf("%w: file %q is over the limit of %s per file", ErrTooLarge, e.name, formatSize(limit))
	}
	if err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// formatSize writes a byte count for people: "512 MiB", "1.5 KiB", "10 bytes".
func formatSize(n int64) string {
	for _, u := range []struct {
		unit string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size {
			if n%u.size == 0 {
				return fmt.Sprintf("%d %s", n/u.size, u.unit)
			}
			return fmt.Sprintf("%.1f %s", float64(n)/float64(u.size), u.unit)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
