package render

import (
	"strings"
	"testing"
)

func TestDecodeManifests(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // kinds/names, or
		err      string
	}{
		{"objects", configMap("a") + "---\n" + configMap("b"), []string{"ConfigMap/a", "ConfigMap/b"}, ""},
		{"empty documents", "---\n---\n" + configMap("a") + "---\n", []string{"ConfigMap/a"}, ""},
		{"nothing", "", nil, ""},
		{"comments only", "# nothing\n", nil, ""},
		{"list", "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(configMap("a"), "\n", "\n  "), []string{"ConfigMap/a"}, ""},
		{"empty list", "apiVersion: v1\nkind: ConfigMapList\nitems: null\n", nil, ""},
		{"list kind without items is an object", "apiVersion: example.com/v1\nkind: ThingList\nmetadata:\n  name: t\n", []string{"ThingList/t"}, ""},
		{"alias as a key", "x: &k name\nmetadata:\n  *k : m\napiVersion: v1\nkind: ConfigMap\n", []string{"ConfigMap/m"}, ""},
		{"fields from a merge key", "base: &b\n  apiVersion: v1\n  kind: ConfigMap\n<<: *b\nmetadata:\n  name: m\n", []string{"ConfigMap/m"}, ""},
		{"self-referencing alias", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata: &d\n  k: *d\n", nil, "refers to the node that contains it"},
		{"too many", strings.Repeat("---\n"+configMap("a"), 4), nil, "too many objects"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := decodeManifests([]byte(tt.in), 3, nil)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.Kind+"/"+o.Name)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("objects = %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzDecode: decodeManifests never panics, returns objects or an error,
// never more than its max, and every object it returns has an apiVersion,
// a kind and a name.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(configMap("a")))
	f.Add([]byte("---\n" + configMap("a") + "---\n" + configMap("b")))
	f.Add([]byte(aliasBomb()))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems:\n- &o {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- *o\n"))
	f.Add([]byte("a: 1\na: 2\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("base: &b {apiVersion: v1, kind: Secret}\n<<: *b\nmetadata: {name: m}\n"))
	f.Add([]byte("k: \xff\n"))
	f.Add([]byte("? [a, b]\n: c\n"))
	const max = 100
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := decodeManifests(data, max, nil)
		if err != nil {
			if objs != nil {
				t.Fatalf("objects and an error: %v", err)
			}
			return
		}
		if len(objs) > max {
			t.Fatalf("%d objects, max %d", len(objs), max)
		}
		for _, o := range objs {
			if o.APIVersion == "" || o.Kind == "" || o.Name == "" {
				t.Fatalf("incomplete object %+v", o)
			}
		}
	})
}
