package render

import (
	"context"
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
