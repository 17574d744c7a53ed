package render

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSubstitute(t *testing.T) {
	vars := map[string]string{"APP": "web", "EMPTY": "", "TAG": "1.2"}
	tests := []struct {
		in, want string
	}{
		{"name: ${APP}", "name: web"},
		{"${APP}-${APP}", "web-web"},
		{"${UNSET}", ""},
		{"a${UNSET}b", "ab"},
		{"${UNSET:=fallback}", "fallback"},
		{"${UNSET:-fallback}", "fallback"},
		{"${EMPTY:=fallback}", "fallback"},
		{"${EMPTY=fallback}", ""},
		{"${UNSET=fallback}", "fallback"},
		{"${APP:=fallback}", "web"},
		{"${UNSET:=}", ""},
		{"${UNSET:=a b:c/d}", "a b:c/d"},
		{"$${APP}", "${APP}"},
		{"$${APP:=x} ${APP}", "${APP:=x} web"},
		{"$APP $$ $ ${", "$APP $$ $ ${"},
		{"${not valid}", "${not valid}"},
		{"${1X}", "${1X}"},
		{"${APP", "${APP"},
		{"${APP:?err}", "${APP:?err}"},
		{"price: $5", "price: $5"},
	}
	for _, tt := range tests {
		got, _, err := substitute(tt.in, vars, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("substitute(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRenderSubstitution(t *testing.T) {
	root := testdata(t, "subst")
	res, err := Render(context.Background(), Options{Root: root, Path: "plain", Substitute: map[string]string{
		"APP": "shop", "ENV": "prod", "REPLICAS": "3",
	}})
	if err != nil {
		t.Fatal(err)
	}
	d := find(t, res.Objects, "Deployment", "shop")
	if got := d.GetNamespace(); got != "default-ns" {
		t.Errorf("namespace = %q, want the default", got)
	}
	if diff := cmp.Diff(map[string]string{"env": "prod", "unset": "xy"}, d.GetLabels()); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if got := nested(t, d, "spec", "replicas"); got != int64(3) {
		t.Errorf("replicas = %#v, want int64 3 (re-parsed as a number)", got)
	}
	c := container(t, d)
	if got := c["image"]; got != "example/app:latest" {
		t.Errorf("image = %v", got)
	}
	if diff := cmp.Diff([]any{"--greeting=${GREETING}", "--home=$HOME"}, c["args"]); diff != "" {
		t.Errorf("args: escape and bare $ (-want +got):\n%s", diff)
	}
	script := find(t, res.Objects, "ConfigMap", "script")
	if got := nested(t, script, "data", "run.sh"); got != "echo \"${APP} ${HOME:=/root}\"\n" {
		t.Errorf("opted-out object was substituted: %q", got)
	}

	t.Run("default replicas", func(t *testing.T) {
		res, err := Render(context.Background(), Options{Root: root, Path: "plain", Substitute: map[string]string{"APP": "shop"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := nested(t, find(t, res.Objects, "Deployment", "shop"), "spec", "replicas"); got != int64(1) {
			t.Errorf("replicas = %#v, want 1", got)
		}
	})
	t.Run("nil map turns substitution off", func(t *testing.T) {
		res, err := Render(context.Background(), Options{Root: root, Path: "plain"})
		if err != nil {
			t.Fatal(err)
		}
		find(t, res.Objects, "Deployment", "${APP}")
	})
	t.Run("value that breaks the YAML", func(t *testing.T) {
		_, err := Render(context.Background(), Options{Root: root, Path: "plain", Substitute: map[string]string{
			"APP": "shop", "REPLICAS": "[unclosed",
		}})
		userError(t, err, "", "Deployment ${NAMESPACE:=default-ns}/${APP}", "after variable substitution")
	})
	t.Run("invalid variable name", func(t *testing.T) {
		_, err := Render(context.Background(), Options{Root: root, Path: "plain", Substitute: map[string]string{"my-var": "x"}})
		userError(t, err, "", `invalid variable name(s) ["my-var"]`)
	})
}

// TestSubstituteNotRecursive: a value is inserted as it is, even when it
// holds a reference itself; so is a default.
func TestSubstituteNotRecursive(t *testing.T) {
	vars := map[string]string{"A": "${B}", "B": "${A}${A}", "C": "$${A}"}
	for in, want := range map[string]string{
		"${A}":           "${B}",
		"${B}":           "${A}${A}",
		"${C}":           "$${A}",
		"${X:=${A}}":     "${A}", // the default, "${A", runs to the first "}"
		"${A}${B}${A}":   "${B}${A}${A}${B}",
		"$${A} and ${A}": "${A} and ${B}",
	} {
		got, _, err := substitute(in, vars, 1<<20)
		if err != nil || got != want {
			t.Errorf("substitute(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestSubstituteLimits: substitution cannot grow an object, or the sum of
// them, past the limits, nor smuggle in YAML that the decoder refuses in
// Git (a default may hold anchors and aliases).
func TestSubstituteLimits(t *testing.T) {
	refs := strings.Repeat("${BIG} ", 1000)
	if _, _, err := substitute(refs, map[string]string{"BIG": strings.Repeat("x", 1100)}, 1<<20); err == nil {
		t.Error("1000 references to a 1100-byte value fit in 1 MiB")
	}
	if out, _, err := substitute(refs, map[string]string{"BIG": strings.Repeat("x", 1000)}, 1<<20); err != nil || len(out) != 1001000 {
		t.Errorf("1000 references to a 1000-byte value: %d bytes, %v", len(out), err)
	}

	root := t.TempDir()
	body := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: ${BIG}${BIG}${BIG}${BIG}\n"
	write(t, root, "app/a.yaml", body)
	write(t, root, "app/b.yaml", strings.Replace(body, "name: c", "name: d", 1))
	big := map[string]string{"BIG": strings.Repeat("x", 512)}
	_, err := Render(context.Background(), Options{Root: root, Path: "app", Substitute: big, MaxFileBytes: 1024})
	userError(t, err, "", "ConfigMap c", "after variable substitution the object would be more than the 1 KiB limit")
	_, err = Render(context.Background(), Options{Root: root, Path: "app", Substitute: big, MaxTotalBytes: 4096})
	userError(t, err, "", "ConfigMap d", "after variable substitution the objects add up to more than the 4 KiB limit")

	// Unquoted, the defaults become YAML structure once substituted.
	bomb := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  a: ${A:=&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]}\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		bomb += "  " + n + ": ${" + strings.ToUpper(n) + ":=&" + n + " [" + strings.Repeat("*"+prev+", ", 8) + "*" + prev + "]}\n"
		prev = n
	}
	write(t, root, "bomb/x.yaml", bomb)
	res, err := Render(context.Background(), Options{Root: root, Path: "bomb", Substitute: map[string]string{}})
	if res != nil {
		t.Errorf("objects returned: %v", ids(res.Objects))
	}
	userError(t, err, "", "ConfigMap bomb", "after variable substitution", "YAML aliases expand")
}

// FuzzSubstitute: substitute never panics, never returns more than max
// bytes, leaves text without "${" alone, and never expands a value: the
// result is what substituting opaque placeholders and then putting the
// values in their place gives.
func FuzzSubstitute(f *testing.F) {
	f.Add("name: ${A}", "web", "x")
	f.Add("${A}${B}${C:=d}$${A}${", "${B}", "${A}${A}")
	f.Add("${A:-x}${B=y}${C-z}${1}${A:?e}", "", "v")
	f.Add(strings.Repeat("${A}", 64), strings.Repeat("x", 64), "")
	f.Add("$$$${A}}}${${A}}", "$", "}")
	const max = 1 << 12
	f.Fuzz(func(t *testing.T, s, a, b string) {
		vars := map[string]string{"A": a, "B": b}
		out, changed, err := substitute(s, vars, max)
		if err != nil {
			// At most one value per "${": check the refusal when the full
			// result is cheap to build.
			if bound := len(s) * (1 + len(a) + len(b)); bound < 1<<24 {
				if full, _, err := substitute(s, vars, int64(bound)); err != nil || len(full) <= max {
					t.Fatalf("refused, but the full result is %d bytes (%v)", len(full), err)
				}
			}
			return
		}
		if len(out) > max {
			t.Fatalf("%d bytes, max %d", len(out), max)
		}
		if !strings.Contains(s, "${") && (changed || out != s) {
			t.Fatalf("text without a reference changed: %q -> %q", s, out)
		}
		if !changed && out != s {
			t.Fatalf("unchanged, yet %q -> %q", s, out)
		}
		if a == "" || b == "" || strings.ContainsRune(s+a+b, 0) {
			return // placeholders must be non-empty and unambiguous
		}
		placed, _, err := substitute(s, map[string]string{"A": "\x00A\x00", "B": "\x00B\x00"}, 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.NewReplacer("\x00A\x00", a, "\x00B\x00", b).Replace(placed); want != out {
			t.Fatalf("a value was expanded: %q -> %q, want %q", s, out, want)
		}
	})
}
