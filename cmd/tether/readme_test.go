package main

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// readme returns the repository's README.md.
func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stringConsts returns the values of the string constants declared in the
// Go file at path, by name.
func stringConsts(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out[name.Name] = v
				}
			}
		}
	}
	return out
}

// TestREADMEListsEveryCondition fails when a condition type or reason of
// api/v1alpha1 is missing from the README's GitSync reference.
func TestREADMEListsEveryCondition(t *testing.T) {
	text := readme(t)
	i := strings.Index(text, "Every condition type and reason the agent sets")
	if i < 0 {
		t.Fatal("README has no list of condition types and reasons")
	}
	section := text[i:]
	consts := stringConsts(t, "../../api/v1alpha1/conditions.go")
	if len(consts) < 20 {
		t.Fatalf("found only %d constants in conditions.go: is the parse right?", len(consts))
	}
	for name, v := range consts {
		if !strings.Contains(section, "`"+v+"`") {
			t.Errorf("README's list of conditions and reasons lacks %s (%q)", name, v)
		}
	}
}

// TestREADMEListsEveryHubRoute fails when a route the hub serves
// (hub/http.go) has no row in the README's table of who may call what.
func TestREADMEListsEveryHubRoute(t *testing.T) {
	text := readme(t)
	i := strings.Index(text, "Who may call what, by token kind")
	j := strings.Index(text, "A project token that asks for a GitSync outside P")
	if i < 0 || j < i {
		t.Fatal("README has no table of what the hub exposes to whom")
	}
	table := text[i:j]
	src, err := os.ReadFile("../../hub/http.go")
	if err != nil {
		t.Fatal(err)
	}
	routes := regexp.MustCompile(`mux\.Handle(?:Func)?\("(?:(GET|POST) )?(/[^"]*)"`).FindAllStringSubmatch(string(src), -1)
	if len(routes) < 15 {
		t.Fatalf("found only %d routes in hub/http.go: is the pattern right?", len(routes))
	}
	wildcard := regexp.MustCompile(`\\\{[^}]*\\\}`)
	for _, r := range routes {
		method, path := r[1], strings.TrimSuffix(r[2], "{$}")
		// The README names wildcards for what they hold ({ns} or
		// {namespace}, {name}.svg for {file}) and a rest of the path as
		// "...".
		pat := regexp.QuoteMeta(path)
		pat = strings.ReplaceAll(pat, `\{path\.\.\.\}`, `\.\.\.`)
		pat = wildcard.ReplaceAllString(pat, `\{[a-z]+\}(\.svg)?`)
		re := regexp.MustCompile("`" + `(\w+ )?` + pat + "(\\?[^`]*)?`")
		m := re.FindAllString(table, -1)
		if m == nil {
			t.Errorf("README's hub table lacks %s %s", method, path)
			continue
		}
		// A route that only takes one method is named with it, unless a
		// GET; a POST never hides behind a bare path.
		if method == "POST" {
			found := false
			for _, s := range m {
				found = found || strings.HasPrefix(s, "`POST ")
			}
			if !found {
				t.Errorf("README's hub table names %s without POST", path)
			}
		}
	}
}

// sample returns the lines of the README that follow the line holding
// command inside a shell block, with their "# " taken off: the output
// the README shows for it.
func sample(t *testing.T, text, command string) []string {
	t.Helper()
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, command) {
			continue
		}
		var out []string
		for _, o := range lines[i+1:] {
			if !strings.HasPrefix(o, "# ") {
				break
			}
			out = append(out, strings.TrimPrefix(o, "# "))
		}
		if len(out) > 0 {
			return out
		}
	}
	t.Fatalf("README shows no output of %q", command)
	return nil
}

// sameTable compares a printed table with the README's sample cell by
// cell, but for ages, which depend on when it ran.
func sameTable(t *testing.T, what string, got, want []string) {
	t.Helper()
	age := regexp.MustCompile(`^\d+[smhd]$`)
	strip := func(cs []string) []string {
		var out []string
		for _, c := range cs {
			if !age.MatchString(c) {
				out = append(out, c)
			}
		}
		return out
	}
	if len(got) < len(want) {
		t.Fatalf("%s printed %d lines, the README shows %d:\n%s", what, len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		g, w := strip(cells(got[i])), strip(cells(want[i]))
		if strings.Join(g, "|") != strings.Join(w, "|") {
			t.Errorf("%s line %d:\n got  %q\n README %q", what, i, g, w)
		}
	}
}

// TestREADMEGetSamples runs `kubectl get gitsyncs -A` (the pinned kubectl)
// and `tether get gitsyncs -A` against a real API server holding the
// GitSync the README's samples show, and compares what they print with
// the samples.
func TestREADMEGetSamples(t *testing.T) {
	text := readme(t)
	cp, c := startControlPlane(t)
	ctx := context.Background()
	const rev = "main@sha1:17d7cb5aa6ac576e7a777d91811efb8a4e6dbfee"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: defaultNamespace}}); err != nil {
		t.Fatal(err)
	}
	gs := appGitSync(defaultNamespace, "https://git.example.com/team/podinfo.git")
	gs.Name = "podinfo-staging"
	if err := c.Create(ctx, gs); err != nil {
		t.Fatal(err)
	}
	gs.Status = v1alpha1.GitSyncStatus{
		ObservedGeneration: gs.Generation, LastAppliedRevision: rev, LastAttemptedRevision: rev, ShortRevision: "17d7cb5",
		Conditions: []metav1.Condition{{Type: v1alpha1.ReadyCondition, Status: metav1.ConditionTrue,
			Reason: v1alpha1.ReasonSucceeded, Message: "Applied revision " + rev, LastTransitionTime: metav1.Now()}},
	}
	if err := c.Status().Update(ctx, gs); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := runCmd(t, "get", "gitsyncs", "-A", "--kubeconfig", cp.KubeconfigPath)
	if code != 0 {
		t.Fatalf("tether get gitsyncs -A: exit %d: %s", code, errOut)
	}
	sameTable(t, "tether get gitsyncs -A", strings.Split(strings.TrimSpace(out), "\n"), sample(t, text, "tether get gitsyncs -A"))

	bin, err := testenv.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(filepath.Join(bin, "kubectl"), "--kubeconfig", cp.KubeconfigPath, "get", "gitsyncs", "-A").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get gitsyncs -A: %v\n%s", err, b)
	}
	sameTable(t, "kubectl get gitsyncs -A", strings.Split(strings.TrimSpace(string(b)), "\n"), sample(t, text, "kubectl get gitsyncs -A"))
}
