package testenv

import (
	"fmt"
	"os"
	"strings"

	"github.com/fluxcd/pkg/ssa/utils"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ReadObjects reads a multi-document YAML fixture, replacing ${KEY} with
// vars[KEY]; a ${KEY} without a value is an error, so that a fixture never
// silently applies an empty name.
func ReadObjects(path string, vars map[string]string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var missing []string
	text := os.Expand(string(data), func(k string) string {
		v, ok := vars[k]
		if !ok {
			missing = append(missing, k)
		}
		return v
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: no value for %s", path, strings.Join(missing, ", "))
	}
	objs, err := utils.ReadObjects(strings.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return objs, nil
}
