package render

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// errReadOnly is returned by every write through rootFS: checkouts are shared
// between GitSyncs and must never change under them.
var errReadOnly = errors.New("the repository checkout is read-only")

// escapeError reports a read that would leave the repository root. It never
// names where a symlink leads: that is a path on the agent's machine, and
// the person reading the status has no business learning it.
type escapeError struct {
	path    string // as kustomize asked for it, relative to the root when possible
	symlink bool   // the path is inside the root, but its symlinks lead out
}

func (e *escapeError) Error() string {
	if e.symlink {
		return e.path + " is a symlink that leads outside the repository root"
	}
	return e.path + " is outside the repository root"
}

// role is what kustomize does with a file, as far as the kustomization that
// names it tells; it decides which checks the file's content gets.
type role uint8

const (
	roleData          role = iota // bytes for a generator, or not known: size limits only
	roleYAML                      // parsed as YAML (patches, plugin configs, CRDs, ...): parseYAML
	roleResource                  // Kubernetes objects: decodeManifests, and they count
	roleKustomization             // a kustomization file: parseYAML and checkKustomization
)

// rootFS is the file system kustomize sees. It confines every read to root
// after resolving symlinks, refuses every write, and lays a few in-memory
// files (generated kustomizations) over the checkout so that nothing is ever
// written into it.
//
// It is also where render's rules for content are enforced, because every
// byte kustomize reads passes through it: each kustomization is checked as
// kustomize reads it (checkKustomization: no remote reference unless
// allowed, nothing outside the root), each file is held to the size limits
// before it is read, and manifests are decoded with decodeManifests first.
// The first refusal is recorded, so that kustomize cannot swallow it.
//
// A rootFS serves one Render, on one goroutine at a time.
type rootFS struct {
	root    string             // absolute, symlinks resolved
	disk    filesys.FileSystem // kustomize's on-disk file system
	mem     filesys.FileSystem // holds the virtual files
	virtual map[string]bool    // absolute paths of the files held by mem
	lim     limits

	allowRemote bool // Options.AllowRemoteBases
	exclusive   bool // this build holds schemaMu exclusively (see build)
	// clones, when set, are the temporary directories kustomize clones
	// remote bases into: only those created during this build are
	// readable (see startClones).
	clones *cloneDirs

	// scope is the deepest folder (absolute) holding every path inside the
	// root that this render looked at, symlinks followed or not: nothing
	// outside it can change the result (see Cache).
	scope string

	files  map[string][]byte // content read so far, by absolute path
	parsed map[string]bool   // files that passed parseYAML
	counts map[string]int    // files that passed decodeManifests: their objects
	total  int64             // bytes of files, each counted once

	// Per build attempt (see reset).
	roles      map[string]role // what the kustomizations read so far say of each file
	objects    int             // objects kustomize read, each time it read them
	allowedGET map[string]bool // URLs of allowed remote bases, which kustomize first tries to GET
	refusal    error           // the first rule kustomize ran into
}

var _ filesys.FileSystem = (*rootFS)(nil)

// newRootFS returns a file system confined to root, which must be absolute
// and free of symlinks (filepath.EvalSymlinks).
func newRootFS(root string, lim limits, allowRemote bool) *rootFS {
	f := &rootFS{
		root:        root,
		disk:        filesys.MakeFsOnDisk(),
		mem:         filesys.MakeFsInMemory(),
		virtual:     map[string]bool{},
		lim:         lim,
		allowRemote: allowRemote,
		files:       map[string][]byte{},
		parsed:      map[string]bool{},
		counts:      map[string]int{},
	}
	f.reset()
	return f
}

// reset forgets what one build attempt learnt, keeping the files read.
func (f *rootFS) reset() {
	f.roles = map[string]role{}
	f.objects = 0
	f.allowedGET = map[string]bool{}
	f.refusal = nil
	f.clones = nil
}

// refuse records err as the first rule kustomize ran into, and returns it.
func (f *rootFS) refuse(err error) error {
	if f.refusal == nil {
		f.refusal = err
	}
	return err
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

// rel names p for messages: relative to the root when it can be, and a
// file in a clone of a remote base as "<remote base>/path/in/the/repo"
// rather than by the agent's temporary directory.
func (f *rootFS) rel(p string) string {
	if jail := f.jail(p); jail != "" && jail != f.root {
		if r, err := filepath.Rel(jail, p); err == nil {
			return "<remote base>/" + filepath.ToSlash(r)
		}
	}
	if r, err := filepath.Rel(f.root, p); err == nil {
		return filepath.ToSlash(r)
	}
	return p
}

// cloneDirs tells kustomize's clones of remote bases (os.TempDir()/
// kustomize-*, made with mode 0700 by os.MkdirTemp) of this build from
// those of any other. Builds that may clone hold schemaMu exclusively, so
// no other render's kustomize runs meanwhile: a clone directory this build
// may read is one that did not exist when it began. One left behind by an
// earlier render, or named by a kustomization that guessed it, is refused.
type cloneDirs struct {
	tmp    string          // os.TempDir(), symlinks resolved
	before map[string]bool // kustomize-* names that existed when the build began
}

// startClones lets this build read the clones it makes from now on.
func (f *rootFS) startClones() error {
	tmp, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	c := &cloneDirs{tmp: tmp, before: map[string]bool{}}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "kustomize-") {
			c.before[e.Name()] = true
		}
	}
	f.clones = c
	return nil
}

// jail returns the directory that p (absolute, clean) and whatever its
// symlinks lead to must stay in: the root, or, for remote bases, the one
// clone directory of this build that p is in. "" means p may not be read at
// all. Symlinks from the checkout into a clone directory are refused too.
func (f *rootFS) jail(p string) string {
	if within(f.root, p) {
		return f.root
	}
	c := f.clones
	if c == nil || !within(c.tmp, p) || p == c.tmp {
		return ""
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(p, c.tmp+string(filepath.Separator)), string(filepath.Separator))
	if !strings.HasPrefix(first, "kustomize-") || c.before[first] {
		return ""
	}
	return filepath.Join(c.tmp, first)
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
	f.touch(abs)
	real, err := resolve(abs)
	if err != nil {
		return "", err
	}
	f.touch(real)
	if !within(jail, real) {
		return "", &escapeError{path: f.rel(abs), symlink: true}
	}
	return abs, nil
}

// touch widens the scope to hold p, when p is inside the root.
func (f *rootFS) touch(p string) {
	if !within(f.root, p) {
		return
	}
	if f.scope == "" {
		f.scope = p
	}
	for !within(f.scope, p) {
		f.scope = filepath.Dir(f.scope)
	}
}

// checkRead is check for a read: an escape is a refusal.
func (f *rootFS) checkRead(p string) (string, error) {
	abs, err := f.check(p)
	var esc *escapeError
	if errors.As(err, &esc) {
		return "", f.refuse(err)
	}
	return abs, err
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

// RemoveAll only removes this build's own clones of remote bases.
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

// Open opens a file for reading, held to the same limits as ReadFile.
func (f *rootFS) Open(path string) (filesys.File, error) {
	abs, err := f.checkRead(path)
	if err != nil {
		return nil, err
	}
	if f.virtual[abs] {
		return f.mem.Open(abs)
	}
	if _, err := f.statRegular(abs); err != nil {
		return nil, err
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
	abs, err := f.checkRead(path)
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
	abs, err := f.checkRead(path)
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
	if _, err := f.checkRead(filepath.Dir(pattern)); err != nil {
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

// ReadFile reads a file inside the root, or a virtual one, within the size
// limits, and checks its content for the role the kustomizations read so
// far give it.
func (f *rootFS) ReadFile(path string) ([]byte, error) {
	abs, err := f.checkRead(path)
	if err != nil {
		return nil, err
	}
	data, err := f.load(abs)
	if err != nil {
		return nil, err
	}
	if err := f.inspect(abs, data); err != nil {
		return nil, f.refuse(err)
	}
	return data, nil
}

// Walk walks a tree inside the root. Like filepath.Walk it does not follow
// symlinked directories; files reached are still checked when read.
func (f *rootFS) Walk(path string, walkFn filepath.WalkFunc) error {
	abs, err := f.checkRead(path)
	if err != nil {
		return err
	}
	return f.disk.Walk(abs, walkFn)
}

// statRegular refuses, before anything is read, a file that is too large or
// not a regular file (a FIFO would block the read forever, a device never
// end it). Directories get the ordinary error: kustomize tries every
// resource as a file first.
func (f *rootFS) statRegular(abs string) (os.FileInfo, error) {
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, &fs.PathError{Op: "read", Path: abs, Err: syscall.EISDIR}
	}
	if !fi.Mode().IsRegular() {
		return nil, f.refuse(&Error{Path: f.rel(abs), Err: errors.New("not a regular file")})
	}
	if fi.Size() > f.lim.file {
		return nil, f.refuse(&Error{Path: f.rel(abs), Err: fmt.Errorf("the file is %s, more than the %s limit for one file", size(fi.Size()), size(f.lim.file))})
	}
	return fi, nil
}

// load returns the content of the file at abs, reading it from disk the
// first time only: each file counts once towards the total limit, however
// often kustomize reads it.
func (f *rootFS) load(abs string) ([]byte, error) {
	if f.virtual[abs] {
		return f.mem.ReadFile(abs)
	}
	if data, ok := f.files[abs]; ok {
		return data, nil
	}
	fi, err := f.statRegular(abs)
	if err != nil {
		return nil, err
	}
	if f.total+fi.Size() > f.lim.total {
		return nil, f.refuse(&Error{Path: f.rel(abs), Err: fmt.Errorf("the files read for this render add up to more than the %s limit", size(f.lim.total))})
	}
	file, err := os.Open(abs)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	// The limit holds even if the file grew since Stat.
	data, err := io.ReadAll(io.LimitReader(file, f.lim.file+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > f.lim.file {
		return nil, f.refuse(&Error{Path: f.rel(abs), Err: fmt.Errorf("the file is more than the %s limit for one file", size(f.lim.file))})
	}
	f.total += int64(len(data))
	f.files[abs] = data
	return data, nil
}

// inspect checks data, the content of abs, for its role: a kustomization
// file by its name, any other file by what the kustomizations read so far
// made of it. The YAML checks run once per file; objects are counted each
// time kustomize reads them, because each read adds them to its build.
func (f *rootFS) inspect(abs string, data []byte) error {
	r := f.roles[abs]
	if isKustomizationName(filepath.Base(abs)) {
		r = roleKustomization
	}
	if r == roleData {
		return nil
	}
	rel := f.rel(abs)
	switch {
	case r == roleResource:
		n, ok := f.counts[abs]
		if !ok {
			objs, err := decodeManifests(data, f.lim.objects-f.objects, nil)
			if errors.Is(err, errTooManyObjects) {
				err = tooManyObjects(f.lim.objects)
			}
			if err != nil {
				return &Error{Path: rel, Err: err}
			}
			n = len(objs)
			f.counts[abs] = n
			f.parsed[abs] = true
		}
		f.objects += n
	case !f.parsed[abs]:
		if err := parseYAML(data, nil); err != nil {
			if r == roleKustomization {
				err = fmt.Errorf("invalid Kustomization: %w", err)
			}
			return &Error{Path: rel, Err: err}
		}
		f.parsed[abs] = true
	}
	if f.objects > f.lim.objects {
		return &Error{Path: rel, Err: tooManyObjects(f.lim.objects)}
	}
	if r == roleKustomization {
		return checkKustomization(f, abs, data)
	}
	return nil
}

// setRole records what a kustomization makes of the file at abs, keeping
// the strongest role when several name it.
func (f *rootFS) setRole(abs string, r role) {
	if r > f.roles[abs] {
		f.roles[abs] = r
	}
}

// isKustomizationName reports whether kustomize reads a file of that name as
// a kustomization.
func isKustomizationName(name string) bool {
	for _, k := range konfig.RecognizedKustomizationFileNames() {
		if name == k {
			return true
		}
	}
	return false
}

// size formats a byte count for messages: "16 MiB", "1.5 KiB", "12 bytes".
func size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
