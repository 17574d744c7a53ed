package drift

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestMaskSecretHidesEveryValue: no value of a Secret reaches a diff, not
// even through kubectl's last-applied-configuration annotation, which holds
// the whole Secret as JSON.
func TestMaskSecretHidesEveryValue(t *testing.T) {
	t.Parallel()
	const lastApplied = `{"apiVersion":"v1","kind":"Secret","stringData":{"password":"in-annotation"}}`
	for _, tc := range []struct {
		name          string
		before, after map[string]any
		want          []string
	}{
		{
			name: "data, stringData and annotations changed",
			before: map[string]any{"kind": "Secret", "data": map[string]any{"password": "bGl2ZQ=="},
				"metadata": map[string]any{"annotations": map[string]any{"kubectl.kubernetes.io/last-applied-configuration": lastApplied, "team": "a"}}},
			after: map[string]any{"kind": "Secret", "stringData": map[string]any{"password": "from-git"},
				"metadata": map[string]any{"annotations": map[string]any{"team": "a"}}},
			want: []string{"kubectl.kubernetes.io/last-applied-configuration: '*** (before)'", "team: '***'", "password: '*** (after)'"},
		},
		{
			name:   "only the live side",
			before: map[string]any{"kind": "Secret", "metadata": map[string]any{"annotations": map[string]any{"note": "token=abc"}}},
			want:   []string{"note: '*** (before)'"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			maskSecret(tc.before, tc.after)
			var out strings.Builder
			for _, side := range []map[string]any{tc.before, tc.after} {
				b, err := yaml.Marshal(side)
				if err != nil {
					t.Fatal(err)
				}
				out.Write(b)
			}
			for _, leak := range []string{"in-annotation", "bGl2ZQ==", "from-git", "token=abc"} {
				if strings.Contains(out.String(), leak) {
					t.Errorf("%q shown:\n%s", leak, out.String())
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("want %q in:\n%s", w, out.String())
				}
			}
		})
	}
}
