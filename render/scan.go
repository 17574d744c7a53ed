package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/types"
)

// scanner walks a kustomization and every local kustomization it refers to
// before kustomize runs, because krusty offers no switch to stop it from
// cloning a git base or fetching an http resource: the only way to make sure
// no network call happens is to refuse such references first. It also names
// the reference when a local one leaves the repository root.
type scanner struct {
	fs          *rootFS
	allowRemote bool
	seen        map[string]bool // kustomization directories already scanned

	openAPI bool // some kustomization sets `openapi:` (see schemaMu)
	remote  bool // some remote reference was let through (not inspected)
}

// exclusive reports whether the build needs schemaMu exclusively.
func (s *scanner) exclusive() bool { return s.openAPI || s.remote }

// dir scans the kustomization in dir, which must have one (possibly virtual).
func (s *scanner) dir(dir string) error {
	if s.seen[dir] {
		return nil
	}
	s.seen[dir] = true
	file := kustomizationFile(s.fs, dir)
	if file == "" {
		return nil // not a kustomization; kustomize reports it
	}
	data, err := s.fs.ReadFile(file)
	if err != nil {
		return &Error{Path: s.fs.rel(file), Err: err}
	}
	var k types.Kustomization
	if err := k.Unmarshal(data); err != nil {
		return &Error{Path: s.fs.rel(file), Err: err}
	}
	k.FixKustomization()
	c := &kustCheck{s: s, dir: dir, file: s.fs.rel(file)}
	return c.run(&k)
}

// kustCheck checks the references of one kustomization file.
type kustCheck struct {
	s    *scanner
	dir  string // absolute
	file string // relative to the root, for messages
}

func (c *kustCheck) errf(format string, args ...any) error {
	return &Error{Path: c.file, Err: fmt.Errorf(format, args...)}
}

func (c *kustCheck) run(k *types.Kustomization) error {
	if len(k.OpenAPI) > 0 {
		c.s.openAPI = true
	}
	if len(k.HelmCharts) > 0 || k.HelmGlobals != nil {
		name := "helmGlobals"
		if len(k.HelmCharts) > 0 {
			name = k.HelmCharts[0].Name
		}
		return c.errf("helm chart %q: helm charts are not supported (kustomize would download the chart and write it into the checkout)", name)
	}
	for _, r := range k.Resources {
		if err := c.ref("resources", r, true); err != nil {
			return err
		}
	}
	for _, r := range k.Components {
		if err := c.ref("components", r, true); err != nil {
			return err
		}
	}
	for _, f := range []field{
		{"generators", k.Generators}, {"transformers", k.Transformers}, {"validators", k.Validators},
	} {
		for _, r := range f.refs {
			if err := c.plugin(f.name, r); err != nil {
				return err
			}
		}
	}
	for _, f := range fileFields(k) {
		for _, r := range f.refs {
			if r == "" {
				continue
			}
			if err := c.ref(f.name, r, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// field is a kustomization field and the references it holds.
type field struct {
	name string
	refs []string
}

// fileFields returns the fields of k that name files kustomize will read.
func fileFields(k *types.Kustomization) []field {
	var patches, json6902, psm, repl, cms, secrets []string
	for _, p := range k.Patches {
		patches = append(patches, p.Path)
	}
	for _, p := range k.PatchesJson6902 {
		json6902 = append(json6902, p.Path)
	}
	for _, p := range k.PatchesStrategicMerge {
		if !strings.Contains(string(p), "\n") { // else an inline patch
			psm = append(psm, string(p))
		}
	}
	for _, r := range k.Replacements {
		repl = append(repl, r.Path)
	}
	for _, g := range k.ConfigMapGenerator {
		cms = append(cms, kvFiles(g.KvPairSources)...)
	}
	for _, g := range k.SecretGenerator {
		secrets = append(secrets, kvFiles(g.KvPairSources)...)
	}
	return []field{
		{"crds", k.Crds}, {"configurations", k.Configurations},
		{"patches", patches}, {"patchesJson6902", json6902}, {"patchesStrategicMerge", psm},
		{"replacements", repl}, {"openapi", []string{k.OpenAPI["path"]}},
		{"configMapGenerator", cms}, {"secretGenerator", secrets},
	}
}

// kvFiles returns the file names of a generator: files: [key=]path, envs.
func kvFiles(kv types.KvPairSources) []string {
	var out []string
	for _, f := range kv.FileSources {
		if _, p, ok := strings.Cut(f, "="); ok {
			f = p
		}
		out = append(out, f)
	}
	return append(out, kv.EnvSources...)
}

// ref checks one reference. Bases (resources, components) may be
// directories, which are scanned in turn.
func (c *kustCheck) ref(field, ref string, base bool) error {
	if filepath.IsAbs(ref) {
		// It could only point into the checkout by knowing where the agent
		// keeps it, and it must not point anywhere else.
		return c.errf("%s: %q: absolute paths are not allowed; use a path relative to the kustomization", field, ref)
	}
	local := filepath.Join(c.dir, ref)
	kind := remoteKind(ref, false) // http(s): fetched before anything else
	if kind == "" && base {
		// kustomize tries a resource as a local file before a git URL.
		if c.s.fs.Exists(local) && !c.s.fs.IsDir(local) {
			return nil
		}
		kind = remoteKind(ref, true)
	}
	if kind != "" {
		if strings.HasPrefix(strings.TrimPrefix(strings.ToLower(ref), "git::"), "file://") {
			return c.errf("%s: %s %q is never allowed: it reads a repository outside the checkout", field, kind, ref)
		}
		if !c.s.allowRemote {
			return c.errf("%s: %s %q is not allowed (set spec.allowRemoteBases to fetch it)", field, kind, ref)
		}
		c.s.remote = true
		return nil
	}
	if _, err := c.s.fs.check(local); err != nil {
		return c.errf("%s: %q: %w", field, ref, err)
	}
	if base && c.s.fs.IsDir(local) {
		return c.s.dir(local)
	}
	return nil
}

// plugin checks a generators/transformers/validators entry: inline YAML, a
// kustomization directory, or a file of plugin configurations.
func (c *kustCheck) plugin(field, entry string) error {
	if strings.Contains(entry, "\n") {
		return c.helmConfig(field, "inline entry", []byte(entry))
	}
	if err := c.ref(field, entry, true); err != nil {
		return err
	}
	p := filepath.Join(c.dir, entry)
	if remoteKind(entry, true) != "" || c.s.fs.IsDir(p) || !c.s.fs.Exists(p) {
		return nil
	}
	data, err := c.s.fs.ReadFile(p)
	if err != nil {
		return c.errf("%s: %q: %w", field, entry, err)
	}
	return c.helmConfig(field, entry, data)
}

// helmConfig refuses a HelmChartInflationGenerator configuration.
func (c *kustCheck) helmConfig(field, what string, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		}
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil // kustomize reports malformed plugin configs itself
		}
		if doc.Kind == "HelmChartInflationGenerator" {
			return c.errf("%s: %s: helm chart %q: helm charts are not supported (kustomize would download the chart and write it into the checkout)", field, what, doc.Name)
		}
	}
}

// scpUser matches the user@ of an scp-style git reference (git@host:org/repo).
var scpUser = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]*@`)

// remoteKind returns a description when kustomize would
// fetch ref over the network, else "". It errs on the side of remote: a
// superset of what kustomize's git.NewRepoSpecFromURL and
// loader.IsRemoteFile accept.
func remoteKind(ref string, base bool) string {
	r := strings.TrimSpace(ref)
	if u, err := url.Parse(r); err == nil && (strings.EqualFold(u.Scheme, "http") || strings.EqualFold(u.Scheme, "https")) {
		return "remote reference"
	}
	if !base {
		return "" // only bases are cloned; other fields are read with ldr.Load
	}
	lower := strings.ToLower(r)
	switch {
	case strings.HasPrefix(lower, "git::"),
		strings.Contains(lower, "://"),
		scpUser.MatchString(r),
		strings.HasPrefix(lower, "github.com/"),
		strings.HasPrefix(lower, "github.com:"):
		return "remote git reference"
	}
	return ""
}
