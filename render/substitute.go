package render

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"
)

// DisableSubstituteAnnotation, set to "disabled" on an object, keeps
// variable substitution away from it (e.g. a ConfigMap holding a shell
// script full of ${...}).
const DisableSubstituteAnnotation = "tether.dev/substitute"

// varName is what a variable may be called, as in Flux's postBuild.
var varName = regexp.MustCompile(`^[_a-zA-Z][_a-zA-Z0-9]*$`)

// checkVarNames refuses substitute keys that could never be referenced.
func checkVarNames(vars map[string]string) error {
	var bad []string
	for k := range vars {
		if !varName.MatchString(k) {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	return fmt.Errorf("substitute: invalid variable name(s) %q: names must match %s", bad, varName)
}

// substBudget bounds what substitution may make of the objects: a value
// of a kilobyte referred to a million times in a manifest must not become a
// gigabyte in the agent's memory.
type substBudget struct {
	object int64 // bytes of one object's YAML after substitution
	total  int64 // bytes of all substituted objects' YAML
	used   int64
}

// substituteObject replaces variables in obj the way Flux's postBuild does:
// on the object serialized as YAML, which is then parsed again, so that
// `replicas: ${REPLICAS}` becomes a number. A value that breaks the YAML is
// an error naming the object. The substituted YAML gets the same checks as
// a manifest in Git (parseYAML): a default can hold YAML anchors and
// aliases, so substitution could otherwise build an alias bomb.
func substituteObject(obj *unstructured.Unstructured, vars map[string]string, b *substBudget) (*unstructured.Unstructured, error) {
	// "${" can only come from a key or a string value: an object without one
	// stays as it is, and need not be written as YAML to learn that.
	if !hasRef(obj.Object) {
		return obj, nil
	}
	data, err := sigsyaml.Marshal(obj.Object)
	if err != nil {
		return nil, err
	}
	out, changed, err := substitute(string(data), vars, b.object)
	if err != nil || !changed {
		return obj, err
	}
	if b.used += int64(len(out)); b.used > b.total {
		return nil, fmt.Errorf("after variable substitution the objects add up to more than the %s limit", size(b.total))
	}
	if err := parseYAML([]byte(out), nil); err != nil {
		return nil, fmt.Errorf("after variable substitution: %w", err)
	}
	j, err := sigsyaml.YAMLToJSON([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("after variable substitution the object is no longer valid YAML: %w", err)
	}
	res := &unstructured.Unstructured{}
	if err := res.UnmarshalJSON(j); err != nil {
		return nil, fmt.Errorf("after variable substitution: %w", err)
	}
	return res, nil
}

// substitute expands, in s:
//
//	${var}            the value of var, or "" when var is unset
//	${var:=default}   default when var is unset or empty (also ${var:-default})
//	${var=default}    default when var is unset (also ${var-default})
//	$${var}           a literal ${var}
//
// Anything else, including a bare $var, a "${" that does not start a valid
// reference and a lone "$$", is left as it is, so shell snippets survive.
// A default runs to the first "}" and is not expanded itself, and neither
// is a value: a value that holds "${other}" yields that text, so the result
// is at most len(s) plus one value per reference. It reports whether
// anything changed, and fails when the result would exceed max bytes.
func substitute(s string, vars map[string]string, max int64) (string, bool, error) {
	if !strings.Contains(s, "${") {
		return s, false, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	changed := false
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '$')
		if j < 0 {
			b.WriteString(s[i:])
			break
		}
		b.WriteString(s[i : i+j])
		i += j
		if strings.HasPrefix(s[i:], "$${") {
			b.WriteString("${")
			i += 3
			changed = true
			continue
		}
		if val, n, ok := parseRef(s[i:], vars); ok {
			if int64(b.Len()+len(val)) > max {
				return "", false, errTooLarge(max)
			}
			b.WriteString(val)
			i += n
			changed = true
			continue
		}
		b.WriteByte('$')
		i++
	}
	if int64(b.Len()) > max {
		return "", false, errTooLarge(max)
	}
	return b.String(), changed, nil
}

func errTooLarge(max int64) error {
	return fmt.Errorf("after variable substitution the object would be more than the %s limit", size(max))
}

// parseRef parses a reference at the start of s ("${..."), returning its
// value and length.
func parseRef(s string, vars map[string]string) (string, int, bool) {
	if !strings.HasPrefix(s, "${") {
		return "", 0, false
	}
	end := strings.IndexByte(s, '}')
	if end < 0 {
		return "", 0, false
	}
	body := s[2:end]
	name, op, def := body, "", ""
	if k := strings.IndexAny(body, ":=-"); k >= 0 {
		name = body[:k]
		rest := body[k:]
		switch {
		case strings.HasPrefix(rest, ":="), strings.HasPrefix(rest, ":-"):
			op, def = ":", rest[2:]
		case strings.HasPrefix(rest, "="), strings.HasPrefix(rest, "-"):
			op, def = "=", rest[1:]
		default:
			return "", 0, false
		}
	}
	if !varName.MatchString(name) {
		return "", 0, false
	}
	val, set := vars[name]
	switch {
	case op == ":" && val == "":
		val = def
	case op == "=" && !set:
		val = def
	}
	return val, end + 1, true
}

// hasRef reports whether a key or a string in v contains "${".
func hasRef(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, "${")
	case map[string]any:
		for k, e := range v {
			if strings.Contains(k, "${") || hasRef(e) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if hasRef(e) {
				return true
			}
		}
	}
	return false
}
