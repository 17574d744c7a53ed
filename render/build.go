package render

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/openapi"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
)

// schemaMu guards kustomize's one piece of process-wide mutable state that
// still races in kustomize/api v0.21.2: the OpenAPI schema of
// sigs.k8s.io/kustomize/kyaml/openapi. Measured with go test -race
// (TestRenderConcurrent), two races remain without a lock:
//
//   - First use. The built-in schema is parsed lazily, under kyaml's lock,
//     but openapi.IsNamespaceScoped reads the map that parse fills without
//     taking that lock (openapi.go:423 against :734/:743). Two first builds,
//     one with a custom kind and one with a patch, race. Fixed by parsing
//     the schema once, exclusively, before the first build (warmSchema);
//     after that ordinary builds only read it.
//   - A kustomization with an `openapi:` field (a built-in version or a
//     custom schema file) makes openapi.SetSchema drop the parsed schema,
//     and the next reader rebuilds it while other builds read it: a data
//     race that can end in "concurrent map read and map write". The custom
//     schema would also leak into every later build. Such builds, and builds
//     that clone remote bases (see cloneDirs), hold schemaMu exclusively
//     and put the default schema back before releasing it.
//
// Everything else in a build (loaders, resource factories, plugin tables)
// is per-Kustomizer or read-only, so ordinary builds share the lock and run
// in parallel. Flux instead holds one mutex around every build;
// BenchmarkRenderParallel measures what sharing buys.
var (
	schemaMu   sync.RWMutex
	schemaOnce sync.Once
)

// warmSchema parses kyaml's default OpenAPI schema; callers hold schemaMu
// exclusively.
func warmSchema() {
	openapi.SchemaForResourceType(kyaml.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"})
}

// schemaReady parses kyaml's default OpenAPI schema the first time it is
// called; callers then take schemaMu to read it.
func schemaReady() {
	schemaOnce.Do(func() {
		schemaMu.Lock()
		defer schemaMu.Unlock()
		warmSchema()
	})
}

// kustomize runs kustomize on dir, holding schemaMu shared. When a
// kustomization turns out to need it exclusively (checkKustomization
// returns errNeedExclusive as kustomize reads it, before kustomize acts on
// it), the build starts again, exclusively: the lock stays shared for every
// build that does not change the schema or clone.
func kustomize(fsys *rootFS, dir string) (resmap.ResMap, error) {
	m, err := buildLocked(fsys, dir, false)
	if errors.Is(err, errNeedExclusive) {
		fsys.reset()
		m, err = buildLocked(fsys, dir, true)
	}
	return m, err
}

// buildLocked runs one build attempt under schemaMu, with the network
// guard on. A refusal rootFS or the guard recorded wins over whatever
// kustomize made of it, and over success: kustomize swallows some read
// errors (a kustomization it cannot read is "missing"), and a refused
// read must never turn into a build without that file.
func buildLocked(fsys *rootFS, dir string, exclusive bool) (m resmap.ResMap, err error) {
	schemaReady()
	if exclusive {
		schemaMu.Lock()
		defer schemaMu.Unlock()
		defer func() {
			openapi.ResetOpenAPI()
			warmSchema()
		}()
	} else {
		schemaMu.RLock()
		defer schemaMu.RUnlock()
	}
	fsys.exclusive = exclusive
	if exclusive && fsys.allowRemote {
		if err := fsys.startClones(); err != nil {
			return nil, fmt.Errorf("render: temporary directory: %w", err)
		}
	}
	release, err := guardNetwork(fsys)
	if err != nil {
		return nil, err
	}
	defer release()
	// A kustomize panic on some tree must not take the agent, and every
	// other GitSync, down with it. The value is not shown: it may quote
	// the tree, Secrets included.
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, &Error{Path: fsys.rel(dir), Err: errors.New("kustomize crashed on this tree (a kustomize bug)")}
		}
	}()
	m, err = krusty.MakeKustomizer(krustyOptions()).Run(fsys, dir)
	if fsys.refusal != nil {
		return nil, refusalError(fsys, dir, err)
	}
	if err != nil {
		return nil, buildError(fsys, dir, err)
	}
	return m, nil
}

// refusalError returns fsys's recorded refusal as an *Error; runErr is what
// kustomize made of it, which tells where it was.
func refusalError(fsys *rootFS, dir string, runErr error) error {
	var rerr *Error
	switch r := fsys.refusal; {
	case errors.As(r, &rerr):
		return rerr
	case errors.Is(r, errNeedExclusive):
		return r
	default:
		path := dir
		if runErr != nil {
			path = trailPath(fsys, dir, runErr)
		}
		return &Error{Path: fsys.rel(path), Err: r}
	}
}

// accumulating matches kustomize's trail of what it was loading.
var accumulating = regexp.MustCompile(`accumulating resources from '([^']*)'`)

// buildError turns a kustomize failure into an *Error. Its Path is the file
// kustomize was reading when it failed, reconstructed from the trail of
// "accumulating resources from '...'" in its message (each relative to the
// previous kustomization), or dir when that leads nowhere. Absolute paths
// inside the checkout are shortened to repository-relative ones: the
// agent's cache directory means nothing to the person reading the status.
func buildError(fsys *rootFS, dir string, err error) error {
	return &Error{Path: fsys.rel(trailPath(fsys, dir, err)), Err: &relError{
		msg: strings.ReplaceAll(err.Error(), fsys.root+string(filepath.Separator), ""),
		err: err,
	}}
}

// trailPath returns the file kustomize was reading when it failed with err,
// or dir.
func trailPath(fsys *rootFS, dir string, err error) string {
	path := dir
	for _, m := range accumulating.FindAllStringSubmatch(err.Error(), -1) {
		if remoteKind(m[1], true) != "" {
			break
		}
		next := filepath.Join(path, m[1])
		if !fsys.Exists(next) {
			break
		}
		path = next
	}
	return path
}

// relError is err with a message rewritten for the user.
type relError struct {
	msg string
	err error
}

func (e *relError) Error() string { return e.msg }
func (e *relError) Unwrap() error { return e.err }
