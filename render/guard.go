package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/types"
)

// errNeedExclusive stops a build that holds schemaMu shared when a
// kustomization turns out to need it exclusively (an `openapi:` field, or an
// allowed remote base); build then starts it again, exclusively.
var errNeedExclusive = errors.New("render: this build needs kustomize to itself")

// checkKustomization checks the kustomization file at abs, whose content is
// data, when kustomize reads it. rootFS calls it for every kustomization
// kustomize reads (the root one, bases, components, those inside remote
// clones and those of generator and transformer folders), which is what
// makes it complete: a walk of our own beside kustomize's could miss one.
//
// It refuses remote references that are not allowed, absolute paths and
// references that leave the root, naming the field; and it tells rootFS
// what each local file it names is, so that its content gets the right
// checks when kustomize reads it. Remote references are recognised by a
// superset of kustomize's own rules (remoteKind): this is what keeps git
// off the network, since kustomize clones in a `git` process that no Go
// code of ours sits in front of. Plain http(s) reads, however produced,
// are also refused below kustomize, in its HTTP client (see network.go).
func checkKustomization(f *rootFS, abs string, data []byte) error {
	var k types.Kustomization
	if err := k.Unmarshal(data); err != nil {
		return &Error{Path: f.rel(abs), Err: err}
	}
	k.FixKustomization()
	c := &kustCheck{fs: f, dir: filepath.Dir(abs), file: f.rel(abs)}
	if err := c.run(&k); err != nil {
		return err
	}
	if (c.needExclusive || len(k.OpenAPI) > 0) && !f.exclusive {
		return errNeedExclusive
	}
	return nil
}

// kustCheck checks the references of one kustomization file.
type kustCheck struct {
	fs   *rootFS
	dir  string // absolute
	file string // relative to the root, for messages

	needExclusive bool // an allowed remote base: kustomize will clone
}

func (c *kustCheck) errf(format string, args ...any) error {
	return &Error{Path: c.file, Err: fmt.Errorf(format, args...)}
}

func (c *kustCheck) run(k *types.Kustomization) error {
	if len(k.HelmCharts) > 0 || k.HelmGlobals != nil {
		name := "helmGlobals"
		if len(k.HelmCharts) > 0 {
			name = k.HelmCharts[0].Name
		}
		return c.errf("helm chart %q: helm charts are not supported (kustomize would download the chart and write it into the checkout)", name)
	}
	for _, r := range k.Resources {
		if err := c.base("resources", r, roleResource); err != nil {
			return err
		}
	}
	for _, r := range k.Components {
		if err := c.base("components", r, roleResource); err != nil {
			return err
		}
	}
	for _, f := range []field{
		{"generators", k.Generators, roleYAML}, {"transformers", k.Transformers, roleYAML}, {"validators", k.Validators, roleYAML},
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
			if err := c.fileRef(f.name, r, f.role); err != nil {
				return err
			}
		}
	}
	return c.sweep(k)
}

// field is a kustomization field, the references it holds and what the
// files it names are.
type field struct {
	name string
	refs []string
	role role
}

// fileFields returns the fields of k, other than bases, that name files
// kustomize will read.
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
		{"crds", k.Crds, roleYAML}, {"configurations", k.Configurations, roleYAML},
		{"patches", patches, roleYAML}, {"patchesJson6902", json6902, roleYAML}, {"patchesStrategicMerge", psm, roleYAML},
		{"replacements", repl, roleYAML}, {"openapi", []string{k.OpenAPI["path"]}, roleYAML},
		{"configMapGenerator", cms, roleData}, {"secretGenerator", secrets, roleData},
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

// base checks an entry of resources, components, generators, transformers
// or validators: the fields kustomize may clone a git repository for. r is
// what a local file named there is.
func (c *kustCheck) base(field, ref string, r role) error {
	if filepath.IsAbs(ref) {
		// It could only point into the checkout by knowing where the agent
		// keeps it, and it must not point anywhere else.
		return c.errf("%s: %q: absolute paths are not allowed; use a path relative to the kustomization", field, shown(ref))
	}
	local := filepath.Join(c.dir, ref)
	kind := remoteKind(ref, false) // http(s): fetched before anything else
	if kind == "" {
		// kustomize tries a resource as a local file before a git URL.
		if c.fs.Exists(local) && !c.fs.IsDir(local) {
			c.fs.setRole(local, r)
			return nil
		}
		kind = remoteKind(ref, true)
	}
	if kind != "" {
		return c.remote(field, kind, ref)
	}
	if _, err := c.fs.check(local); err != nil {
		return c.errf("%s: %q: %w", field, ref, err)
	}
	return nil
}

// remote decides on a remote base. Allowed are https git URLs only, and
// only with spec.allowRemoteBases: plain http can be read and rewritten on
// the way, ssh reaches any host's port 22 with whatever keys the agent has,
// file:// reads the agent's disk. Git submodules must be off, because a
// repository's .gitmodules may point at any of those.
func (c *kustCheck) remote(field, kind, ref string) error {
	lower := strings.ToLower(strings.TrimSpace(ref))
	lower = strings.TrimPrefix(lower, "git::")
	switch {
	case strings.HasPrefix(lower, "file://"):
		return c.errf("%s: %s %q is never allowed: it reads a repository outside the checkout", field, kind, shown(ref))
	case !c.fs.allowRemote:
		return c.errf("%s: %s %q is not allowed (set spec.allowRemoteBases to fetch it)", field, kind, shown(ref))
	case !strings.HasPrefix(lower, "https://"):
		return c.errf("%s: %s %q is not allowed: remote bases must be https:// git URLs (plain http, ssh, scp-style and github.com/ shorthands are refused)", field, kind, shown(ref))
	}
	_, query, _ := strings.Cut(ref, "?")
	// Mirrors kustomize's parseQuery, which clones submodules unless the
	// query parses and says false.
	values, err := url.ParseQuery(query)
	if off, perr := strconv.ParseBool(values.Get("submodules")); err != nil || perr != nil || off {
		return c.errf("%s: %s %q is not allowed: kustomize would also clone the repository's git submodules, which may point anywhere; add submodules=false to its query", field, kind, shown(ref))
	}
	c.needExclusive = true
	// kustomize GETs a resource URL as a file before it clones it; that
	// request is refused too (network.go), but must not fail the build.
	if u, err := url.ParseRequestURI(ref); err == nil {
		c.fs.allowedGET[u.String()] = true
	}
	return nil
}

// fileRef checks a reference to a file that kustomize reads (never clones).
func (c *kustCheck) fileRef(field, ref string, r role) error {
	if filepath.IsAbs(ref) {
		return c.errf("%s: %q: absolute paths are not allowed; use a path relative to the kustomization", field, shown(ref))
	}
	if kind := remoteKind(ref, false); kind != "" {
		return c.errf("%s: %s %q is not allowed: render never fetches files by URL (spec.allowRemoteBases allows https git bases only)", field, kind, shown(ref))
	}
	local := filepath.Join(c.dir, ref)
	if _, err := c.fs.check(local); err != nil {
		return c.errf("%s: %q: %w", field, ref, err)
	}
	c.fs.setRole(local, r)
	return nil
}

// plugin checks a generators/transformers/validators entry: inline YAML, a
// kustomization directory, a file of plugin configurations or a remote base.
func (c *kustCheck) plugin(field, entry string) error {
	if strings.Contains(entry, "\n") {
		return c.helmConfig(field, "inline entry", []byte(entry))
	}
	if err := c.base(field, entry, roleYAML); err != nil {
		return err
	}
	p := filepath.Join(c.dir, entry)
	if remoteKind(entry, true) != "" || c.fs.IsDir(p) || !c.fs.Exists(p) {
		return nil
	}
	data, err := c.fs.ReadFile(p)
	if err != nil {
		return c.errf("%s: %q: %w", field, entry, err)
	}
	return c.helmConfig(field, entry, data)
}

// dataKeys are kustomization keys whose strings are data (labels, names,
// inline patches, ...), never something kustomize loads; sweep skips them,
// and the base fields, which base has checked.
var dataKeys = map[string]bool{
	"resources": true, "components": true, "generators": true, "transformers": true, "validators": true,
	"metadata": true, "commonLabels": true, "labels": true, "commonAnnotations": true, "annotations": true,
	"literals": true, "namespace": true, "namePrefix": true, "nameSuffix": true, "images": true,
	"imageTags": true, "replicas": true, "vars": true, "sortOptions": true, "buildMetadata": true,
	"generatorOptions": true, "options": true, "patch": true, "target": true, "source": true,
	"targets": true, "name": true, "behavior": true,
}

// sweep refuses a URL in any field of k that is not data: the fields listed
// in fileFields get their own messages first, and sweep is there for the
// one kustomize reads a file from that the list does not name.
func (c *kustCheck) sweep(k *types.Kustomization) error {
	raw, err := json.Marshal(k)
	if err != nil {
		return err
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return c.sweepValue("", v)
}

func (c *kustCheck) sweepValue(path string, v any) error {
	switch v := v.(type) {
	case map[string]any:
		for key, val := range v {
			if dataKeys[key] {
				continue
			}
			if err := c.sweepValue(strings.TrimPrefix(path+"."+key, "."), val); err != nil {
				return err
			}
		}
	case []any:
		for i, val := range v {
			if err := c.sweepValue(fmt.Sprintf("%s[%d]", path, i), val); err != nil {
				return err
			}
		}
	case string:
		if kind := remoteKind(v, false); kind != "" {
			return c.errf("%s: %s %q is not allowed: render never fetches files by URL (spec.allowRemoteBases allows https git bases only)", path, kind, shown(v))
		}
	}
	return nil
}

// shown is ref for a message: a URL loses its user information, which may
// be a token.
func shown(ref string) string {
	u, err := url.Parse(strings.TrimSpace(ref))
	if err != nil || u.User == nil {
		return ref
	}
	u.User = nil
	return u.String()
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
