package render

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// errReadOnly is returned by every write through rootFS: checkouts are shared
// between GitSyncs and must never change under them.
var errReadOnly = errors.New("the repository checkout is read-only")

// escapeError reports a read that would leave the repository root.
type escapeError struct {
	path   string // as kustomize asked for it, relative to the root when possible
	target string // where a symlink led, if that is how it escaped
}

func (e *escapeError) Error() string {
	if e.target != "" {
		return fmt.Sprintf("%s is a symlink to %s, outside the repository root", e.path, e.target)
	}
	return fmt.Sprintf("%s is outside the repository root", e.path)
}

// rootFS is the file system kustomize sees. It confines every read to root
// after resolving symlinks, refuses every write, and lays a few in-memory
// files (generated kustomizations) over the checkout so that nothing is ever
// written into it.
type rootFS struct {
	root    string             // absolute, symlinks resolved
	disk    filesys.FileSystem // kustomize's on-disk file system
	mem     filesys.FileSystem // holds the virtual files
	virtual map[string]bool    // absolute paths of the files held by mem
	// cloneDir, when set, is the temporary directory kustomize clones remote
	// bases into (os.TempDir()/kustomize-*): readable and removable only when
	// the GitSync allows remote bases.
	cloneDir string
}

var _ filesys.FileSystem = (*rootFS)(nil)

// newRootFS returns a file system confined to root, which must be absolute
// and free of symlinks (filepath.EvalSymlinks).
func newRootFS(root string, allowClones bool) *rootFS {
	f := &rootFS{
		root:    root,
		disk:    filesys.MakeFsOnDisk(),
		mem:     filesys.MakeFsInMemory(),
		virtual: map[string]bool{},
	}
	if allowClones {
		if tmp, err := filepath.EvalSymlinks(os.TempDir()); err == nil {
			f.cloneDir = tmp
		}
	}
	return f
}

// addVirtual lays an in-memory file at the absolute path p.
func (f *rootFS) addVirtual(p string, data []byte) error {
	p = filepath.Clean(p)
	if err := f.mem.WriteFile(p, data); err != nil {
		return err
	}
	f.virtual[p] = true
	return nil
}

// rel names p for messages: relative to the root when it can be.
func (f *rootFS) rel(p string) string {
	if r, err := filepath.Rel(f.root, p); err == nil {
		return filepath.ToSlash(r)
	}
	return p
}

// jail returns the directory that p (absolute, clean) and whatever its
// symlinks lead to must stay in: the root, or, for remote bases, the one
// kustomize clone directory p is in. "" means p may not be read at all.
// Symlinks from the checkout into a clone directory are refused too, since
// that clone may belong to another GitSync's render.
func (f *rootFS) jail(p string) string {
	if within(f.root, p) {
		return f.root
	}
	if f.cloneDir == "" || !within(f.cloneDir, p) || p == f.cloneDir {
		return ""
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(p, f.cloneDir+string(filepath.Separator)), string(filepath.Separator))
	if !strings.HasPrefix(first, "kustomize-") {
		return ""
	}
	return filepath.Join(f.cloneDir, first)
}

// within reports whether p is dir or below it; both absolute and clean.
func within(dir, p string) bool {
	if p == dir {
		return true
	}
	if dir == string(filepath.Separator) {
		return true
	}
	return strings.HasPrefix(p, dir+string(filepath.Separator))
}

// check returns the absolute, clean form of p, or an *escapeError when p, or
// what its symlinks lead to, lies outside the root. A path that does not
// exist is checked through its nearest existing ancestor, so that kustomize
// gets the ordinary "not found" error for it.
func (f *rootFS) check(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if f.virtual[abs] {
		return abs, nil
	}
	jail := f.jail(abs)
	if jail == "" {
		return "", &escapeError{path: f.rel(abs)}
	}
	real, err := resolve(abs)
	if err != nil {
		return "", err
	}
	if !within(jail, real) {
		return "", &escapeError{path: f.rel(abs), target: real}
	}
	return abs, nil
}

// resolve evaluates the symlinks of the longest existing prefix of abs.
func resolve(abs string) (string, error) {
	rest := ""
	p := abs
	for {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return "", err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// Create refuses: the checkout is read-only.
func (f *rootFS) Create(path string) (filesys.File, error) { return nil, f.writeErr(path) }

// Mkdir refuses: the checkout is read-only.
func (f *rootFS) Mkdir(path string) error { return f.writeErr(path) }

// MkdirAll refuses: the checkout is read-only.
func (f *rootFS) MkdirAll(path string) error { return f.writeErr(path) }

// WriteFile refuses: the checkout is read-only.
func (f *rootFS) WriteFile(path string, _ []byte) error { return f.writeErr(path) }

// RemoveAll only removes kustomize's own clones of remote bases.
func (f *rootFS) RemoveAll(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if jail := f.jail(abs); jail != "" && jail != f.root {
		return f.disk.RemoveAll(abs)
	}
	return f.writeErr(path)
}

func (f *rootFS) writeErr(path string) error {
	return fmt.Errorf("refusing to write %s: %w", f.rel(path), errReadOnly)
}

// Open opens a file for reading.
func (f *rootFS) Open(path string) (filesys.File, error) {
	abs, err := f.check(path)
	if err != nil {
		return nil, err
	}
	if f.virtual[abs] {
		return f.mem.Open(abs)
	}
	return f.disk.Open(abs)
}

// IsDir reports whether path is a directory inside the root.
func (f *rootFS) IsDir(path string) bool {
	abs, err := f.check(path)
	if err != nil || f.virtual[abs] {
		return false
	}
	return f.disk.IsDir(abs)
}

// ReadDir lists a directory, virtual files included.
func (f *rootFS) ReadDir(path string) ([]string, error) {
	abs, err := f.check(path)
	if err != nil {
		return nil, err
	}
	names, err := f.disk.ReadDir(abs)
	if err != nil {
		return nil, err
	}
	for v := range f.virtual {
		if filepath.Dir(v) == abs && !f.disk.Exists(v) {
			names = append(names, filepath.Base(v))
		}
	}
	return names, nil
}

// CleanedAbs is the on-disk CleanedAbs, after the confinement check. For a
// virtual file it answers without touching the disk.
func (f *rootFS) CleanedAbs(path string) (filesys.ConfirmedDir, string, error) {
	abs, err := f.check(path)
	if err != nil {
		return "", "", err
	}
	if f.virtual[abs] {
		dir, _, err := f.disk.CleanedAbs(filepath.Dir(abs))
		return dir, filepath.Base(abs), err
	}
	return f.disk.CleanedAbs(abs)
}

// Exists reports whether path exists inside the root.
func (f *rootFS) Exists(path string) bool {
	abs, err := f.check(path)
	if err != nil {
		return false
	}
	return f.virtual[abs] || f.disk.Exists(abs)
}

// Glob matches on disk and drops whatever matched outside the root.
func (f *rootFS) Glob(pattern string) ([]string, error) {
	if _, err := f.check(filepath.Dir(pattern)); err != nil {
		return nil, err
	}
	matches, err := f.disk.Glob(pattern)
	if err != nil {
		return nil, err
	}
	kept := matches[:0]
	for _, m := range matches {
		if _, err := f.check(m); err == nil {
			kept = append(kept, m)
		}
	}
	return kept, nil
}

// ReadFile reads a file inside the root, or a virtual one.
func (f *rootFS) ReadFile(path string) ([]byte, error) {
	abs, err := f.check(path)
	if err != nil {
		return nil, err
	}
	if f.virtual[abs] {
		return f.mem.ReadFile(abs)
	}
	return f.disk.ReadFile(abs)
}

// Walk walks a tree inside the root. Like filepath.Walk it does not follow
// symlinked directories; files reached are still checked when read.
func (f *rootFS) Walk(path string, walkFn filepath.WalkFunc) error {
	abs, err := f.check(path)
	if err != nil {
		return err
	}
	return f.disk.Walk(abs, walkFn)
}
