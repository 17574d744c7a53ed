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

// substituteObject replaces variables in obj the way Flux's postBuild does:
// on the object serialized as YAML, which is then parsed again, so that
// `replicas: ${REPLICAS}` becomes a number. A value that breaks the YAML is
// an error naming the object.
func substituteObject(obj *unstructured.Unstructured, vars map[string]string) (*unstructured.Unstructured, error) {
	data, err := sigsyaml.Marshal(obj.Object)
	if err != nil {
		return nil, err
	}
	out, changed := substitute(string(data), vars)
	if !changed {
		return obj, nil
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
// A default runs to the first "}" and is not expanded itself. It reports
// whether anything changed.
func substitute(s string, vars map[string]string) (string, bool) {
	if !strings.Contains(s, "${") {
		return s, false
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
			b.WriteString(val)
			i += n
			changed = true
			continue
		}
		b.WriteByte('$')
		i++
	}
	return b.String(), changed
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
