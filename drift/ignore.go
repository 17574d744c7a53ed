package drift

import (
	"fmt"
	"strings"
)

// IgnoreRule excludes fields, or whole objects, from drift. Selector
// fields left empty match any object.
type IgnoreRule struct {
	Group     string
	Kind      string
	Name      string
	Namespace string
	// Paths are JSON pointers (RFC 6901) such as /spec/replicas; a path
	// ignores the field and everything inside it, and a segment "*"
	// matches any one key or index (/spec/template/spec/containers/*/image).
	// No paths ignores the whole object, deletion included.
	Paths []string
}

// ignoreRules are IgnoreRules with their paths split into segments.
type ignoreRules []compiledRule

type compiledRule struct {
	rule  IgnoreRule
	paths [][]string
}

func compileIgnore(rules []IgnoreRule) (ignoreRules, error) {
	out := make(ignoreRules, 0, len(rules))
	for i, r := range rules {
		for _, p := range r.Paths {
			if !strings.HasPrefix(p, "/") {
				return nil, fmt.Errorf("drift: ignore rule #%d: path %q is not a JSON pointer (it must start with /)", i, p)
			}
		}
		out = append(out, r.compile())
	}
	return out, nil
}

// compile splits r's paths, which must be JSON pointers.
func (r IgnoreRule) compile() compiledRule {
	c := compiledRule{rule: r}
	for _, p := range r.Paths {
		c.paths = append(c.paths, segments(p))
	}
	return c
}

func (c compiledRule) matches(e *entry) bool {
	r := c.rule
	return (r.Group == "" || r.Group == e.gvk.Group) &&
		(r.Kind == "" || r.Kind == e.gvk.Kind) &&
		(r.Name == "" || r.Name == e.key.name) &&
		(r.Namespace == "" || r.Namespace == e.key.namespace)
}

// wholeObject reports whether a rule without paths matches e.
func (rs ignoreRules) wholeObject(e *entry) bool {
	for _, c := range rs {
		if len(c.paths) == 0 && c.matches(e) {
			return true
		}
	}
	return false
}

// ignored reports whether path of e is ignored.
func (rs ignoreRules) ignored(e *entry, path string) bool {
	segs := segments(path)
	for _, c := range rs {
		if !c.matches(e) {
			continue
		}
		for _, p := range c.paths {
			if prefixOf(p, segs) {
				return true
			}
		}
	}
	return false
}

func prefixOf(rule, path []string) bool {
	if len(rule) > len(path) {
		return false
	}
	for i, s := range rule {
		if s != "*" && s != path[i] {
			return false
		}
	}
	return true
}

// filter returns o without ignored fields, or nil when nothing is left.
// o is not changed: it may be cached for later Checks with other rules.
func (rs ignoreRules) filter(e *entry, o *Object) *Object {
	if o == nil || rs.wholeObject(e) {
		return nil
	}
	out := *o
	out.Fields, out.Paths, out.Managers = nil, nil, nil
	managers := map[string]bool{}
	for _, f := range o.Fields {
		if rs.ignored(e, f.Path) {
			continue
		}
		out.Fields = append(out.Fields, f)
		out.Paths = append(out.Paths, f.Path)
		for _, m := range f.Managers {
			managers[m] = true
		}
	}
	if len(out.Fields) == 0 && !out.Deleted {
		return nil
	}
	out.Managers = sortedKeys(managers)
	return &out
}
