package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// Limits on one YAML document that are not worth an Options field: far
// above what any Kubernetes object needs, far below what hurts.
const (
	// maxMappingKeys bounds the keys of one mapping: yaml.v3, which
	// kustomize decodes with, compares every key of a mapping with every
	// other one, so a mapping of a million keys would take hours.
	maxMappingKeys = 10000
	// maxExpandedNodes bounds what a document becomes once its YAML aliases
	// are expanded (a "billion laughs" is a few hundred bytes that expand
	// to 10^9 nodes).
	maxExpandedNodes = 1 << 20
)

var (
	// errNotObject marks a document that is YAML but not a Kubernetes object.
	errNotObject = errors.New("not a Kubernetes object")
	// errTooManyObjects is decodeManifests going over its max; callers say
	// what the limit is (tooManyObjects).
	errTooManyObjects = errors.New("too many objects")
)

// object identifies one Kubernetes object found in a manifest file.
type object struct {
	APIVersion, Kind, Name string
	Line                   int
}

// decodeManifests parses data as a stream of YAML documents that must each
// be a Kubernetes object (apiVersion, kind and metadata.name) or a list of
// them (a kind ending in "List" with items, as kustomize expands it), and
// returns the objects. It is the gate every manifest passes before kustomize
// sees it, so it refuses what kustomize would choke on or silently misread
// (see parseYAML), and more than max objects, as soon as it has seen one
// too many. Empty documents are skipped. When each is not nil, it is called
// with every document that passed, in order.
func decodeManifests(data []byte, max int, each func(doc *yaml.Node)) ([]object, error) {
	var objs []object
	err := parseYAML(data, func(doc *yaml.Node, i int) error {
		var err error
		if objs, err = appendObjects(objs, doc, i); err != nil {
			return err
		}
		if len(objs) > max {
			return errTooManyObjects
		}
		if each != nil {
			each(doc)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return objs, nil
}

// appendObjects checks that n (document number doc) is an object or a list
// of objects and appends them to objs.
func appendObjects(objs []object, n *yaml.Node, doc int) ([]object, error) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: document %d is %w (not a mapping)", n.Line, doc, errNotObject)
	}
	apiVersion, kind := scalar(lookup(n, "apiVersion")), scalar(lookup(n, "kind"))
	switch {
	case apiVersion == "" && kind == "":
		return nil, fmt.Errorf("line %d: document %d is %w (no apiVersion or kind)", n.Line, doc, errNotObject)
	case apiVersion == "":
		return nil, fmt.Errorf("line %d: document %d (%s) is %w (no apiVersion)", n.Line, doc, kind, errNotObject)
	case kind == "":
		return nil, fmt.Errorf("line %d: document %d is %w (no kind)", n.Line, doc, errNotObject)
	}
	if strings.HasSuffix(kind, "List") {
		if items := lookup(n, "items"); items != nil {
			items = deref(items)
			if items.Tag == "!!null" {
				return objs, nil
			}
			if items.Kind != yaml.SequenceNode {
				return nil, fmt.Errorf("line %d: document %d (%s): items is not a list", items.Line, doc, kind)
			}
			for _, item := range items.Content {
				var err error
				if objs, err = appendObjects(objs, item, doc); err != nil {
					return nil, err
				}
			}
			return objs, nil
		}
	}
	var name string
	if meta := lookup(n, "metadata"); meta != nil && deref(meta).Kind == yaml.MappingNode {
		name = scalar(lookup(deref(meta), "name"))
	}
	if name == "" {
		return nil, fmt.Errorf("line %d: document %d (%s) has no metadata.name", n.Line, doc, kind)
	}
	return append(objs, object{APIVersion: apiVersion, Kind: kind, Name: name, Line: n.Line}), nil
}

// deref follows an alias to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// scalar returns the value of a scalar node, or "" for anything else.
func scalar(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	if n = deref(n); n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return ""
	}
	return n.Value
}

// lookup returns the value of key in mapping m, looking through merge keys
// ("<<: *defaults") as YAML does, or nil.
func lookup(m *yaml.Node, key string) *yaml.Node {
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := deref(m.Content[i]), m.Content[i+1]
		switch {
		case k.Value == key:
			return v
		case k.Value == "<<" && k.Tag == "!!merge":
			merges = append(merges, v)
		}
	}
	for _, v := range merges {
		v = deref(v)
		sources := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			sources = v.Content
		}
		for _, s := range sources {
			if s = deref(s); s.Kind == yaml.MappingNode {
				if found := lookup(s, key); found != nil {
					return found
				}
			}
		}
	}
	return nil
}

// parseYAML parses data as a stream of YAML documents and calls each with
// every non-empty one and its number, stopping at the first error. It
// refuses what no YAML file render lets kustomize read may contain:
//
//   - bytes that are not UTF-8;
//   - a key twice in one mapping (YAML forbids it, and kustomize would keep
//     one of the two values without a word);
//   - a mapping of more than maxMappingKeys keys;
//   - aliases that expand a document to more than maxExpandedNodes nodes.
//
// Every check is linear in the size of data, and only one document is held
// at a time.
func parseYAML(data []byte, each func(doc *yaml.Node, n int) error) error {
	if err := checkUTF8(data); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for n := 1; ; n++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(doc.Content) == 0 {
			continue
		}
		top := doc.Content[0]
		if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
			continue // an empty document, e.g. after a trailing "---"
		}
		w := &yamlWalk{sizes: map[*yaml.Node]int{}}
		if _, err := w.size(top); err != nil {
			return err
		}
		if each != nil {
			if err := each(top, n); err != nil {
				return err
			}
		}
	}
}

// checkUTF8 refuses data that is not UTF-8, naming the line.
func checkUTF8(data []byte) error {
	if utf8.Valid(data) {
		return nil
	}
	line := 1
	for len(data) > 0 {
		r, n := utf8.DecodeRune(data)
		if r == utf8.RuneError && n <= 1 {
			return fmt.Errorf("line %d: not valid UTF-8", line)
		}
		if r == '\n' {
			line++
		}
		data = data[n:]
	}
	return nil
}

// yamlWalk checks the nodes of one document and measures its size with
// aliases expanded. Anchored nodes are measured once and remembered, so the
// walk is linear however often they are referred to.
type yamlWalk struct {
	sizes map[*yaml.Node]int // anchored nodes: expanded size, or -1 while being measured
}

// size returns the number of nodes n stands for once aliases are expanded,
// checking mappings on the way.
func (w *yamlWalk) size(n *yaml.Node) (int, error) {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return 0, fmt.Errorf("line %d: alias to an unknown anchor", n.Line)
		}
		s, ok := w.sizes[n.Alias]
		if !ok {
			return w.size(n.Alias)
		}
		if s < 0 {
			return 0, fmt.Errorf("line %d: alias *%s refers to the node that contains it", n.Line, n.Value)
		}
		return s, nil
	}
	if n.Anchor != "" {
		if s, ok := w.sizes[n]; ok && s >= 0 {
			return s, nil
		}
		w.sizes[n] = -1
	}
	if n.Kind == yaml.MappingNode {
		if err := checkMapping(n); err != nil {
			return 0, err
		}
	}
	total := 1
	for _, c := range n.Content {
		s, err := w.size(c)
		if err != nil {
			return 0, err
		}
		if total += s; total > maxExpandedNodes {
			return 0, fmt.Errorf("line %d: YAML aliases expand this document to more than %d nodes", n.Line, maxExpandedNodes)
		}
	}
	if n.Anchor != "" {
		w.sizes[n] = total
	}
	return total, nil
}

// checkMapping refuses a mapping with too many keys, a key that is not a
// scalar, or a key given twice.
func checkMapping(n *yaml.Node) error {
	if len(n.Content)/2 > maxMappingKeys {
		return fmt.Errorf("line %d: a mapping with more than %d keys", n.Line, maxMappingKeys)
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := deref(n.Content[i])
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: a mapping key must be a string", k.Line)
		}
		if first, dup := seen[k.Value]; dup {
			return fmt.Errorf("line %d: key %q is defined twice in one mapping (first at line %d)", n.Content[i].Line, k.Value, first)
		}
		seen[k.Value] = n.Content[i].Line
	}
	return nil
}
