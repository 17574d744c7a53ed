package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/render"
	"tether.dev/tether/source"
	tsync "tether.dev/tether/sync"
)

func newRenderCmd() *cobra.Command {
	var (
		root, path  string
		substitute  []string
		allowRemote bool
	)
	cmd := &cobra.Command{
		Use:   "render --path DIR",
		Short: "Render a folder as the agent would and print the objects as YAML",
		Long: `render builds a folder of a repository with kustomize exactly as the agent
does (same restrictions, same substitution) and prints the objects.
The repository root is found by walking up to the folder that holds .git,
unless --root is given; nothing outside it may be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vars, err := parseSubstitute(substitute)
			if err != nil {
				return err
			}
			absRoot, rel, err := splitRepoPath(root, path)
			if err != nil {
				return err
			}
			// The render stage of a sync, with a GitSync made of the flags.
			gs := &v1alpha1.GitSync{Spec: v1alpha1.GitSyncSpec{Path: rel, AllowRemoteBases: allowRemote, Substitute: vars}}
			stages := &tsync.Stages{Renderer: tsync.RenderFunc(render.Render)}
			res, err := stages.Render(cmd.Context(), gs, absRoot, source.Revision{})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for i, obj := range res.Objects {
				b, err := yaml.Marshal(obj.Object)
				if err != nil {
					return fmt.Errorf("%s/%s: %w", obj.GetKind(), obj.GetName(), err)
				}
				if i > 0 {
					fmt.Fprintln(out, "---")
				}
				if _, err := out.Write(b); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "# %d objects, hash %s\n", len(res.Objects), res.Hash)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "path", ".", "folder to render")
	f.StringVar(&root, "root", "", "repository root (default: the nearest folder above --path that holds .git)")
	f.StringArrayVar(&substitute, "substitute", nil, "a variable for ${name} substitution, as name=value (repeatable)")
	f.BoolVar(&allowRemote, "allow-remote-bases", false, "let kustomizations load remote bases")
	return cmd
}

func parseSubstitute(pairs []string) (map[string]string, error) {
	vars := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--substitute %q: want name=value", p)
		}
		vars[k] = v
	}
	return vars, nil
}

// splitRepoPath turns --root and --path into an absolute root and a path
// relative to it.
func splitRepoPath(root, path string) (string, string, error) {
	absPath, err := filepath.Abs(path)
	if err != nil {
		return "", "", err
	}
	if root == "" {
		root = findRepoRoot(absPath)
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return "", "", err
	}
	rel, err := filepath.Rel(absRoot, absPath)
	if err != nil {
		return "", "", fmt.Errorf("--path %s is not inside --root %s", path, root)
	}
	return absRoot, rel, nil
}

// findRepoRoot walks up from dir to the folder holding .git; without one it
// returns dir itself.
func findRepoRoot(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, ".git")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}
