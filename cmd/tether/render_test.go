package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSubstitute(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    map[string]string
		wantErr bool
	}{
		{in: nil, want: map[string]string{}},
		{in: []string{"a=1", "b=x=y", "c="}, want: map[string]string{"a": "1", "b": "x=y", "c": ""}},
		{in: []string{"novalue"}, wantErr: true},
		{in: []string{"=v"}, wantErr: true},
	} {
		got, err := parseSubstitute(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseSubstitute(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && !cmp.Equal(got, tc.want) {
			t.Errorf("parseSubstitute(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestSplitRepoPath(t *testing.T) {
	repo := t.TempDir()
	if err := os.MkdirAll(filepath.Join(repo, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	deep := filepath.Join(repo, "env", "prod")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	root, rel, err := splitRepoPath("", deep)
	if err != nil || root != repo || rel != filepath.Join("env", "prod") {
		t.Fatalf("splitRepoPath found root %q, path %q, err %v; want %q, env/prod", root, rel, err, repo)
	}
	plain := t.TempDir()
	root, rel, err = splitRepoPath("", plain)
	if err != nil || root != plain || rel != "." {
		t.Fatalf("without .git: root %q, path %q, err %v; want the folder itself", root, rel, err)
	}
}
