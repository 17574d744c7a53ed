package drift

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// escape encodes one JSON pointer segment (RFC 6901).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// segments splits a JSON pointer into its raw (still escaped) segments.
func segments(p string) []string {
	if p == "" {
		return nil
	}
	return strings.Split(strings.TrimPrefix(p, "/"), "/")
}

// under reports whether p is q or inside it.
func under(p, q string) bool { return p == q || strings.HasPrefix(p, q+"/") }

func underAny(p string, qs []string) bool {
	for _, q := range qs {
		if under(p, q) {
			return true
		}
	}
	return false
}

// hasPath reports whether the JSON pointer p exists in obj.
func hasPath(obj map[string]any, p string) bool {
	var node any = obj
	for _, s := range segments(p) {
		s = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
		switch n := node.(type) {
		case map[string]any:
			v, ok := n[s]
			if !ok {
				return false
			}
			node = v
		case []any:
			// Lists in Git and live may be ordered alike only by chance;
			// an index that exists is the best this can say.
			i, err := strconv.Atoi(s)
			if err != nil || i < 0 || i >= len(n) {
				return false
			}
			node = n[i]
		default:
			return false
		}
	}
	return true
}

// managerFields is one managedFields entry as JSON pointers into the live
// object.
type managerFields struct {
	manager     string
	subresource string
	time        time.Time
	paths       map[string]bool // leaf fields and list items owned
}

// owners holds every managedFields entry of a live object.
type owners []managerFields

// ownedPaths resolves the managedFields of live to JSON pointers: "f:"
// names become keys, "k:"/"v:"/"i:" list elements become the index of the
// matching item in live; a list item's "." (the item itself) becomes the
// item's path.
func ownedPaths(live *unstructured.Unstructured) owners {
	var out owners
	for _, mf := range live.GetManagedFields() {
		if mf.FieldsV1 == nil {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal(mf.FieldsV1.Raw, &fields); err != nil {
			continue
		}
		m := managerFields{manager: mf.Manager, subresource: mf.Subresource, paths: map[string]bool{}}
		if mf.Time != nil {
			m.time = mf.Time.Time
		}
		walkFields(fields, live.Object, "", false, m.paths)
		out = append(out, m)
	}
	return out
}

func walkFields(fields map[string]any, node any, path string, item bool, out map[string]bool) {
	for key, sub := range fields {
		subFields, _ := sub.(map[string]any)
		var p string
		var child any
		switch {
		case key == ".":
			if item {
				out[path] = true
			}
			continue
		case strings.HasPrefix(key, "f:"):
			name := key[2:]
			p = path + "/" + escape(name)
			if m, ok := node.(map[string]any); ok {
				child = m[name]
			}
		default:
			i := listIndex(key, node)
			if i < 0 {
				continue // not in the live object: nothing to point at
			}
			p, child = path+"/"+strconv.Itoa(i), node.([]any)[i]
		}
		if len(subFields) == 0 {
			out[p] = true
			continue
		}
		walkFields(subFields, child, p, !strings.HasPrefix(key, "f:"), out)
	}
}

// listIndex finds the item of the list node that a "k:", "v:" or "i:"
// element names; -1 when there is none.
func listIndex(key string, node any) int {
	list, ok := node.([]any)
	if !ok || len(key) < 2 {
		return -1
	}
	switch key[:2] {
	case "i:":
		i, err := strconv.Atoi(key[2:])
		if err != nil || i < 0 || i >= len(list) {
			return -1
		}
		return i
	case "v:":
		for i, v := range list {
			if jsonEqual(v, key[2:]) {
				return i
			}
		}
	case "k:":
		var want map[string]any
		if json.Unmarshal([]byte(key[2:]), &want) != nil {
			return -1
		}
	items:
		for i, v := range list {
			m, ok := v.(map[string]any)
			if !ok {
				continue
			}
			for k, x := range want {
				b, _ := json.Marshal(x)
				if !jsonEqual(m[k], string(b)) {
					continue items
				}
			}
			return i
		}
	}
	return -1
}

func jsonEqual(v any, raw string) bool {
	b, err := json.Marshal(v)
	return err == nil && string(b) == raw
}

// managersOf names who owns path p or something inside it; failing that,
// who owns the nearest field around it; failing that (a removed field),
// the managers other than self that updated the object last.
func (os owners) managersOf(p, self string) []string {
	set := map[string]bool{}
	for _, m := range os {
		for q := range m.paths {
			if under(q, p) {
				set[m.manager] = true
			}
		}
	}
	if len(set) == 0 {
		best := -1
		for _, m := range os {
			for q := range m.paths {
				if under(p, q) && len(q) >= best {
					if len(q) > best {
						set, best = map[string]bool{}, len(q)
					}
					set[m.manager] = true
				}
			}
		}
	}
	delete(set, self)
	if len(set) == 0 {
		var last time.Time
		for _, m := range os {
			if m.manager == self || m.subresource != "" {
				continue
			}
			switch {
			case m.time.After(last):
				set, last = map[string]bool{m.manager: true}, m.time
			case m.time.Equal(last):
				set[m.manager] = true
			}
		}
	}
	return sortedKeys(set)
}

// foreign lists the fields that managers other than self and the trusted
// ones own, outside metadata and status, that self does not own too:
// fields added to or taken over in the object behind Tether's back. A
// list item counts once, not once per field inside it.
func (os owners) foreign(self string, trusted map[string]bool) []Field {
	mine := map[string]bool{}
	for _, m := range os {
		if m.manager == self && m.subresource == "" {
			for p := range m.paths {
				mine[p] = true
			}
		}
	}
	byPath := map[string]map[string]bool{}
	for _, m := range os {
		if m.manager == self || trusted[m.manager] || m.subresource != "" {
			continue
		}
		for p := range m.paths {
			if mine[p] || under(p, "/metadata") || under(p, "/status") || p == "" {
				continue
			}
			if byPath[p] == nil {
				byPath[p] = map[string]bool{}
			}
			byPath[p][m.manager] = true
		}
	}
	paths := sortedKeys(byPath)
	var out []Field
	for i, p := range paths {
		// Sorted, so an item's own path comes right before its fields.
		if i > 0 && len(out) > 0 && under(p, out[len(out)-1].Path) {
			continue
		}
		out = append(out, Field{Path: p, Managers: sortedKeys(byPath[p])})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
