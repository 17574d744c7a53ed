package render

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/types"
)

// Options says what to render.
type Options struct {
	// Root is the repository checkout root; it must be absolute.
	Root string
	// Path is spec.path, relative to Root: "./env/prod", "" and "." are allowed.
	Path string
	// AllowRemoteBases is spec.allowRemoteBases: let kustomize fetch remote
	// bases, components and resources (git and http references).
	AllowRemoteBases bool
	// Substitute is spec.substitute: ${var} and ${var:=default} are replaced
	// after the build. Nil means no substitution at all; a non-nil map (even
	// empty) turns it on, and unset variables without a default become "".
	Substitute map[string]string

	// MaxFileBytes caps the size of one file render reads (checked before
	// it is read), and of one object after variable substitution; 0 means
	// DefaultMaxFileBytes.
	MaxFileBytes int64
	// MaxTotalBytes caps the bytes of all files one render reads, each file
	// counted once, and of all objects after variable substitution; 0
	// means DefaultMaxTotalBytes.
	MaxTotalBytes int64
	// MaxObjects caps the number of objects, counted as kustomize reads them
	// and again in the result; 0 means DefaultMaxObjects.
	MaxObjects int
}

// Defaults of the Options limits. They are far above what a repository of
// Kubernetes manifests needs, and keep a hostile one from exhausting the
// agent's memory.
const (
	DefaultMaxFileBytes  = 16 << 20
	DefaultMaxTotalBytes = 128 << 20
	DefaultMaxObjects    = 20000
)

// limits are the Options limits with defaults filled in.
type limits struct {
	file, total int64
	objects     int
}

func (o *Options) limits() limits {
	l := limits{file: o.MaxFileBytes, total: o.MaxTotalBytes, objects: o.MaxObjects}
	if l.file <= 0 {
		l.file = DefaultMaxFileBytes
	}
	if l.total <= 0 {
		l.total = DefaultMaxTotalBytes
	}
	if l.objects <= 0 {
		l.objects = DefaultMaxObjects
	}
	return l
}

// tooManyObjects is the error for a render over the object limit.
func tooManyObjects(limit int) error {
	return fmt.Errorf("more than %d objects, the limit for one render", limit)
}

// Result is what Render produced.
type Result struct {
	// Objects are the rendered objects, in kustomize's output order.
	Objects []*unstructured.Unstructured
	// Hash is the hex sha256 over the objects in order, each serialized as
	// JSON with sorted keys: the same tree and options give the same hash.
	Hash string

	scope string // the folder, relative to the root, holding all the render read
}

// Error is a user error: the tree or the options are wrong, and retrying with
// the same revision will not help.
type Error struct {
	// Path is the file or kustomization directory, relative to the root, that
	// the error is about; empty when it is about Options.Path itself.
	Path string
	Err  error
}

// Error returns "path: err", or err alone when Path is empty.
func (e *Error) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Render builds the kustomization at opts.Path (or the plain folder of YAML
// there, decoded directly when kustomize would not change it: see plain.go)
// inside opts.Root and returns its objects. Kustomize cannot be
// interrupted, so ctx is only checked before and after the build.
func Render(ctx context.Context, opts Options) (*Result, error) {
	return render(ctx, opts, true)
}

// render is Render; direct false builds plain folders with kustomize too,
// for the tests that hold the direct path to kustomize's result.
func render(ctx context.Context, opts Options, direct bool) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkVarNames(opts.Substitute); err != nil {
		return nil, &Error{Err: err}
	}
	root, dir, err := resolvePath(opts.Root, opts.Path)
	if err != nil {
		return nil, err
	}
	fsys := newRootFS(root, opts.limits(), opts.AllowRemoteBases)
	// Where opts.Path is in Git (a symlink, maybe), and where it leads.
	fsys.touch(filepath.Join(root, opts.Path))
	fsys.touch(dir)
	res, err := build(ctx, fsys, dir, opts, direct)
	if err != nil {
		return nil, err
	}
	res.scope = fsys.rel(fsys.scope)
	return res, nil
}

// build renders the folder dir with fsys: directly when it is a plain
// folder that kustomize would not change and direct is set, else with
// kustomize.
func build(ctx context.Context, fsys *rootFS, dir string, opts Options, direct bool) (*Result, error) {
	if kustomizationFile(fsys, dir) == "" {
		folder, err := scanPlain(fsys, dir)
		if err != nil {
			return nil, err
		}
		if direct && folder.direct && distinctIDs(folder.objects) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return collect(folder.objects, opts.Substitute, fsys.lim)
		}
		if err := generateKustomization(fsys, dir, folder); err != nil {
			return nil, err
		}
	}
	m, err := kustomize(fsys, dir)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	objs, err := resMapObjects(m, fsys.lim)
	if err != nil {
		return nil, err
	}
	return collect(objs, opts.Substitute, fsys.lim)
}

// resolvePath returns the root and the directory to render, both absolute
// with symlinks resolved, after checking that the directory is inside the
// root.
func resolvePath(root, path string) (string, string, error) {
	if !filepath.IsAbs(root) {
		return "", "", fmt.Errorf("render: root %q is not absolute", root)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", "", fmt.Errorf("render: repository root: %w", err)
	}
	name := path
	if name == "" {
		name = "."
	}
	if filepath.IsAbs(path) || strings.HasPrefix(path, "/") {
		return "", "", &Error{Err: fmt.Errorf("path %s is absolute; it must be relative to the repository root", name)}
	}
	dir := filepath.Join(realRoot, path)
	if !within(realRoot, dir) {
		return "", "", &Error{Err: fmt.Errorf("path %s escapes the repository root", name)}
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", "", &Error{Err: fmt.Errorf("path %s does not exist in the repository", name)}
	}
	if err != nil {
		return "", "", &Error{Err: fmt.Errorf("path %s: %w", name, err)}
	}
	if !within(realRoot, realDir) {
		// Where the symlink leads is not name: it is a path on the agent.
		return "", "", &Error{Err: fmt.Errorf("path %s escapes the repository root (through a symlink)", name)}
	}
	if fi, err := os.Stat(realDir); err != nil || !fi.IsDir() {
		return "", "", &Error{Err: fmt.Errorf("path %s is not a directory", name)}
	}
	return realRoot, realDir, nil
}

// kustomizationFile returns the absolute name of dir's kustomization file,
// or "" when dir has none.
func kustomizationFile(fsys *rootFS, dir string) string {
	for _, name := range konfig.RecognizedKustomizationFileNames() {
		p := filepath.Join(dir, name)
		if fsys.Exists(p) && !fsys.IsDir(p) {
			return p
		}
	}
	return ""
}

// krustyOptions: no load restrictions inside kustomize, because rootFS
// already confines every read to the repository root; kustomize's own
// "root only" restriction would also refuse the common overlay patch that
// points at ../../shared/patch.yaml. Only built-in plugins (no exec, no
// containers), no helm, and kustomize's output order is kept.
func krustyOptions() *krusty.Options {
	o := krusty.MakeDefaultOptions()
	o.LoadRestrictions = types.LoadRestrictionsNone
	o.PluginConfig = types.DisabledPluginConfig()
	o.Reorder = krusty.ReorderOptionNone
	o.AddManagedbyLabel = false
	return o
}

// resMapObjects turns kustomize's output into objects.
func resMapObjects(m resmap.ResMap, lim limits) ([]*unstructured.Unstructured, error) {
	if m.Size() > lim.objects {
		return nil, &Error{Err: tooManyObjects(lim.objects)}
	}
	objs := make([]*unstructured.Unstructured, 0, m.Size())
	for _, r := range m.Resources() {
		raw, err := r.MarshalJSON()
		if err != nil {
			return nil, &Error{Err: fmt.Errorf("%s: %w", r.CurId(), err)}
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			return nil, &Error{Err: fmt.Errorf("%s: %w", r.CurId(), err)}
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// collect substitutes variables in objs when asked, and hashes the result.
func collect(objs []*unstructured.Unstructured, vars map[string]string, lim limits) (*Result, error) {
	if len(objs) > lim.objects {
		return nil, &Error{Err: tooManyObjects(lim.objects)}
	}
	budget := &substBudget{object: lim.file, total: lim.total}
	h := sha256.New()
	res := &Result{Objects: make([]*unstructured.Unstructured, 0, len(objs))}
	for _, obj := range objs {
		if vars != nil && obj.GetAnnotations()[DisableSubstituteAnnotation] != "disabled" {
			id := objectID(obj)
			var err error
			if obj, err = substituteObject(obj, vars, budget); err != nil {
				return nil, &Error{Err: fmt.Errorf("%s: %w", id, err)}
			}
		}
		// json.Marshal sorts map keys: the hash does not depend on the order
		// in which fields were written in Git.
		canon, err := json.Marshal(obj.Object)
		if err != nil {
			return nil, fmt.Errorf("render: %s: %w", objectID(obj), err)
		}
		h.Write(canon)
		h.Write([]byte{'\n'})
		res.Objects = append(res.Objects, obj)
	}
	res.Hash = hex.EncodeToString(h.Sum(nil))
	return res, nil
}

// objectID names an object for messages: "Kind namespace/name".
func objectID(obj *unstructured.Unstructured) string {
	if ns := obj.GetNamespace(); ns != "" {
		return obj.GetKind() + " " + ns + "/" + obj.GetName()
	}
	return obj.GetKind() + " " + obj.GetName()
}
