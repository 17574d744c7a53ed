package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/apply"
	"tether.dev/tether/drift"
	"tether.dev/tether/render"
	"tether.dev/tether/source"
	tsync "tether.dev/tether/sync"
)

// errChanges makes `tether diff` exit 1, as `kubectl diff` does.
var errChanges = errors.New("the cluster differs from Git")

func newDiffCmd() *cobra.Command {
	var (
		kubeconfig, root, path, gitsync, namespace string
		substitute                                 []string
	)
	cmd := &cobra.Command{
		Use:   "diff [--path DIR] [--gitsync NAMESPACE/NAME]",
		Short: "Show what a sync would change in the cluster, as a unified YAML diff",
		Long: `diff renders a folder (--path) or a GitSync's source (--gitsync alone), dry-runs
a server-side apply of every object exactly as a sync would, and prints a
unified diff of each object that would change. Secret values are masked.
With --gitsync and --path, the local folder is rendered with that GitSync's
settings (substitution, target namespace, owner labels).

Exit code: 0 no changes, 1 changes, 2 error (as kubectl diff).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := runDiff(cmd, kubeconfig, root, path, gitsync, namespace, substitute)
			switch {
			case err == nil, errors.Is(err, errChanges):
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				return nil
			default:
				return &exitError{code: 2, err: err}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG)")
	f.StringVar(&path, "path", "", "folder to render (default with --gitsync: its source)")
	f.StringVar(&root, "root", "", "repository root (default: the nearest folder above --path that holds .git)")
	f.StringVar(&gitsync, "gitsync", "", "a GitSync as namespace/name whose settings (and, without --path, source) to use")
	f.StringVar(&namespace, "namespace", "default", "target namespace without --gitsync")
	f.StringArrayVar(&substitute, "substitute", nil, "a variable for ${name} substitution, as name=value (repeatable)")
	return cmd
}

func runDiff(cmd *cobra.Command, kubeconfig, root, path, gitsync, namespace string, substitute []string) error {
	ctx := cmd.Context()
	if path == "" && gitsync == "" {
		return errors.New("give --path, --gitsync or both")
	}
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: newScheme()})
	if err != nil {
		return err
	}
	vars, err := parseSubstitute(substitute)
	if err != nil {
		return err
	}

	gs := &v1alpha1.GitSync{}
	var drop []string
	if gitsync != "" {
		ns, name, ok := strings.Cut(gitsync, "/")
		if !ok {
			return fmt.Errorf("--gitsync %q: want namespace/name", gitsync)
		}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, gs); err != nil {
			return fmt.Errorf("GitSync %s: %w", gitsync, err)
		}
		for k, v := range gs.Spec.Substitute {
			if _, set := vars[k]; !set {
				vars[k] = v
			}
		}
	} else {
		// No GitSync: compare content only, whoever owns the objects.
		gs.Name, gs.Namespace = "diff", namespace
		drop = []string{v1alpha1.NameLabel, v1alpha1.NamespaceLabel}
	}
	gs.Spec.Substitute = vars

	// The same stages a sync runs: fetch (Secret → credentials), render,
	// plan. Secrets are read once, straight from the API server.
	cache, err := os.MkdirTemp("", "tether-diff-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cache)
	stages := &tsync.Stages{
		Source:      source.NewFetcher(cache, source.Options{}),
		Renderer:    tsync.RenderFunc(render.Render),
		Credentials: tsync.NewCredentials(c, 0),
	}
	planner := apply.NewManager(c, apply.ManagerOptions{})
	var plan *apply.Plan
	if path == "" {
		d, err := stages.Desired(ctx, gs, planner)
		if err != nil {
			return err
		}
		plan = d.Plan
	} else {
		root, rel, err := splitRepoPath(root, path)
		if err != nil {
			return err
		}
		gs.Spec.Path = rel
		res, err := stages.Render(ctx, gs, root, source.Revision{})
		if err != nil {
			return err
		}
		if plan, err = tsync.Plan(ctx, planner, gs, res.Objects); err != nil {
			return err
		}
	}
	diffs, err := drift.Diff(ctx, c, plan.Objects, drift.DiffOptions{DropLabels: drop})
	if err != nil {
		return err
	}
	changed := 0
	out := cmd.OutOrStdout()
	for _, d := range diffs {
		if d.Action == drift.DiffUnchanged {
			continue
		}
		changed++
		fmt.Fprint(out, d.Unified)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d objects would change\n", changed, len(diffs))
	if changed > 0 {
		return errChanges
	}
	return nil
}
