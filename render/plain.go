package render

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/kyaml/resid"
)

// A plain folder of YAML (no kustomization in it or below it) is rendered
// without kustomize: a kustomize build of 1,000 plain objects takes more
// than a second, most of it comparing every object's id with every other
// one's, and it changes nothing in them. plainObject builds the object that
// kustomize would build from one document, and says so only when it is
// sure: a document that uses anything kustomize treats specially (lists,
// anchors and aliases, merge keys, explicit tags, null list items, empty
// values, timestamps, non-string keys, kustomize's and kyaml's own annotations, empty labels or
// annotations, a kustomization as a resource) is left to kustomize, and so
// is a folder in which two objects share an id (distinctIDs), so that
// kustomize's own error is what the user reads. TestPlainMatchesKustomize
// and FuzzPlainMatchesKustomize hold the two paths to the same result.

// plainObject returns the object kustomize would build from doc, a
// document that passed decodeManifests, or false when doc needs kustomize.
// Kustomize's object is doc decoded as YAML into a map, then written as
// JSON and read back (Resource.MarshalJSON, then collect): the same
// decoder is used here, and the JSON round trip is done in place (jsonValue).
func plainObject(doc *yaml.Node) (*unstructured.Unstructured, bool) {
	if doc.Kind != yaml.MappingNode || !plainNode(doc) {
		return nil, false
	}
	m := map[string]any{}
	if err := doc.Decode(&m); err != nil {
		return nil, false
	}
	v, ok := jsonValue(m)
	if !ok {
		return nil, false
	}
	obj := &unstructured.Unstructured{Object: v.(map[string]any)}
	if !plainMeta(obj.Object) {
		return nil, false
	}
	return obj, true
}

// plainSeparators reports whether YAML and kustomize's reader agree on where
// the documents of data begin. Kustomize (kyaml's kio.ByteReader) does not
// let the YAML parser find them: it splits the text at every line that
// starts with "---" (refusing one with anything but a comment after it),
// and decodes one document from each part. Lines that YAML reads otherwise
// ("---: x", "---#", "..." ending a document, directives, a lone "\r"
// breaking lines) are left to kustomize.
func plainSeparators(data []byte) bool {
	if bytes.Count(data, []byte{'\r'}) != bytes.Count(data, []byte("\r\n")) {
		return false
	}
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		line = bytes.TrimSuffix(line, []byte{'\r'})
		switch {
		case bytes.HasPrefix(line, []byte("...")), bytes.HasPrefix(line, []byte("%")):
			return false
		case bytes.HasPrefix(line, []byte("---")):
			rest := line[3:]
			if len(rest) == 0 {
				continue
			}
			if rest[0] != ' ' && rest[0] != '\t' {
				return false
			}
			if rest = bytes.TrimLeft(rest, " \t"); len(rest) > 0 && rest[0] != '#' {
				return false
			}
		}
	}
	return true
}

// plainNode reports whether n and its children avoid everything that
// kustomize's reader, or YAML decoding, treats specially.
func plainNode(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode || n.Anchor != "" || n.Style&yaml.TaggedStyle != 0 {
		return false
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Tag != "!!str" || k.Anchor != "" || k.Style&yaml.TaggedStyle != 0 {
				return false // merge keys are !!merge
			}
			if !plainNode(n.Content[i+1]) {
				return false
			}
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind == yaml.ScalarNode && c.Tag == "!!null" {
				return false // kustomize refuses "empty item" in a list
			}
			if !plainNode(c) {
				return false
			}
		}
	case yaml.ScalarNode:
		// Kustomize writes the document out as YAML and reads it again
		// (RNode.MarshalJSON): an empty value ("key:") comes back as "",
		// and a timestamp as some mix of its text and its time.
		if n.Tag == "!!null" && n.Value == "" || n.Tag == "!!timestamp" {
			return false
		}
	default:
		return false
	}
	return true
}

// plainMeta reports whether obj's type and metadata are what kustomize
// reads without a second thought: string apiVersion, kind, name and
// namespace; labels and annotations absent or non-empty maps of strings, and
// none of kustomize's or kyaml's own annotations (which it acts on or
// strips); not a list, and not a kustomization.
func plainMeta(obj map[string]any) bool {
	apiVersion, ok1 := obj["apiVersion"].(string)
	kind, ok2 := obj["kind"].(string)
	meta, ok3 := obj["metadata"].(map[string]any)
	if !ok1 || !ok2 || !ok3 || strings.HasSuffix(kind, "List") || strings.Contains(apiVersion, "kustomize") || strings.Contains(apiVersion, "config.k") {
		return false
	}
	if _, ok := meta["name"].(string); !ok {
		return false
	}
	if ns, set := meta["namespace"]; set {
		if _, ok := ns.(string); !ok {
			return false
		}
	}
	for _, field := range []string{"labels", "annotations"} {
		v, set := meta[field]
		if !set {
			continue
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) == 0 {
			return false
		}
		for k, v := range m {
			if _, ok := v.(string); !ok || strings.Contains(k, "config.k") || strings.Contains(k, "kustomize") {
				return false
			}
		}
	}
	return true
}

// jsonValue returns v, as decoded from YAML, as it would be after being
// written as JSON and read back into an Unstructured: integers become
// int64, and a float whose JSON form is an integer literal becomes one too.
// It returns false for what that round trip would fail on or change in
// other ways (NaN and infinities, strings that are not UTF-8, integers
// beyond int64, non-string map keys).
func jsonValue(v any) (any, bool) {
	switch v := v.(type) {
	case nil, bool:
		return v, true
	case string:
		return v, utf8.ValidString(v)
	case int:
		return int64(v), true
	case int64:
		return v, true
	case float64:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, false
		}
		if i, err := strconv.ParseInt(string(b), 10, 64); err == nil {
			return i, true
		}
		return v, true
	case map[string]any:
		for k, e := range v {
			if !utf8.ValidString(k) {
				return nil, false
			}
			c, ok := jsonValue(e)
			if !ok {
				return nil, false
			}
			v[k] = c
		}
		return v, true
	case []any:
		for i, e := range v {
			c, ok := jsonValue(e)
			if !ok {
				return nil, false
			}
			v[i] = c
		}
		return v, true
	}
	return nil, false
}

// distinctIDs reports whether no two objects share an id as kustomize
// compares them (group, version, kind, name and effective namespace:
// "" is "default", and cluster-scoped kinds have none); kustomize refuses
// such a folder, with its own message.
func distinctIDs(objs []*unstructured.Unstructured) bool {
	type key struct {
		gvk      resid.Gvk
		name, ns string
	}
	// The namespace scope of a kind comes from kyaml's OpenAPI schema,
	// which builds may swap (see schemaMu).
	schemaReady()
	schemaMu.RLock()
	defer schemaMu.RUnlock()
	seen := make(map[key]bool, len(objs))
	for _, o := range objs {
		group, version := resid.ParseGroupVersion(o.GetAPIVersion())
		id := resid.NewResIdWithNamespace(resid.NewGvk(group, version, o.GetKind()), o.GetName(), o.GetNamespace())
		k := key{gvk: id.Gvk, name: id.Name, ns: id.EffectiveNamespace()}
		if seen[k] {
			return false
		}
		seen[k] = true
	}
	return true
}
