package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"tether.dev/tether/api/v1alpha1"
)

type getOptions struct {
	kube   kubeFlags
	output string
	watch  bool
}

func newGetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get",
		Short: "Show GitSyncs and their status",
	}
	cmd.AddCommand(newGetGitSyncsCmd())
	return cmd
}

func newGetGitSyncsCmd() *cobra.Command {
	o := &getOptions{}
	cmd := &cobra.Command{
		Use:     "gitsyncs [NAME]",
		Aliases: []string{"gitsync", "gs"},
		Short:   "List GitSyncs: ready, applied revision, drift, suspended, age, message",
		Example: `  tether get gitsyncs -A
  tether get gitsyncs app -n team-a -o yaml
  tether get gitsyncs --watch`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: o.kube.completeGitSyncs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.output {
			case "", "wide", "json", "yaml":
			default:
				return fmt.Errorf("-o %q: want wide, json or yaml", o.output)
			}
			if len(args) == 1 && o.kube.allNamespaces {
				return fmt.Errorf("a GitSync name and -A do not go together: name its namespace with -n")
			}
			return o.run(cmd.Context(), args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.kube.bind(cmd, true)
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "", "output format: wide, json or yaml (default: a table)")
	f.BoolVarP(&o.watch, "watch", "w", false, "after listing, print each change as it happens")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"wide", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (o *getOptions) run(ctx context.Context, args []string, out, errOut io.Writer) error {
	c, ns, err := o.kube.client()
	if err != nil {
		return err
	}
	var opts []client.ListOption
	if !o.kube.allNamespaces {
		opts = append(opts, client.InNamespace(ns))
	}
	if len(args) == 1 {
		// Read it once, so that an unknown name is an error and not an
		// empty table.
		if _, err := getGitSync(ctx, c, types.NamespacedName{Namespace: ns, Name: args[0]}); err != nil {
			return err
		}
		opts = append(opts, client.MatchingFields{"metadata.name": args[0]})
	}
	list := &v1alpha1.GitSyncList{}
	if err := c.List(ctx, list, opts...); err != nil {
		return fmt.Errorf("list GitSyncs: %w", err)
	}
	p := &printer{out: out, format: o.output, allNamespaces: o.kube.allNamespaces, now: time.Now()}
	if len(list.Items) == 0 && !o.watch {
		if o.kube.allNamespaces {
			fmt.Fprintln(errOut, "no GitSyncs found")
		} else {
			fmt.Fprintf(errOut, "no GitSyncs found in namespace %s\n", ns)
		}
		return nil
	}
	if err := p.list(list, len(args) == 1); err != nil {
		return err
	}
	if !o.watch {
		return nil
	}
	w, err := c.Watch(ctx, &v1alpha1.GitSyncList{}, append(opts, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})...)
	if err != nil {
		return fmt.Errorf("watch GitSyncs: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("watch GitSyncs: the API server closed the watch")
			}
			if ev.Type != watch.Added && ev.Type != watch.Modified && ev.Type != watch.Deleted {
				continue
			}
			gs, ok := ev.Object.(*v1alpha1.GitSync)
			if !ok {
				continue
			}
			p.now = time.Now()
			if err := p.one(gs); err != nil {
				return err
			}
		}
	}
}

// printer writes GitSyncs as a table, a wide table, JSON or YAML.
type printer struct {
	out           io.Writer
	format        string
	allNamespaces bool
	now           time.Time
	started       bool // the table header, or a first YAML document, is out
}

// list prints a list; single prints the object itself rather than a list
// for -o json|yaml, as kubectl get KIND NAME does.
func (p *printer) list(list *v1alpha1.GitSyncList, single bool) error {
	switch p.format {
	case "json", "yaml":
		if single && len(list.Items) == 1 {
			return p.one(&list.Items[0])
		}
		l := list.DeepCopy()
		l.APIVersion, l.Kind = v1alpha1.GroupVersion.String(), "GitSyncList"
		for i := range l.Items {
			clean(&l.Items[i])
		}
		return p.encode(l)
	}
	tw := tabwriter.NewWriter(p.out, 0, 0, 3, ' ', 0)
	p.header(tw)
	for i := range list.Items {
		p.row(tw, &list.Items[i])
	}
	return tw.Flush()
}

// one prints one GitSync, as --watch does for every change.
func (p *printer) one(gs *v1alpha1.GitSync) error {
	switch p.format {
	case "json", "yaml":
		gs = gs.DeepCopy()
		clean(gs)
		return p.encode(gs)
	}
	tw := tabwriter.NewWriter(p.out, 0, 0, 3, ' ', 0)
	p.header(tw)
	p.row(tw, gs)
	return tw.Flush()
}

func (p *printer) encode(obj any) error {
	if p.format == "json" {
		b, err := json.MarshalIndent(obj, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.out, "%s\n", b)
		return err
	}
	b, err := yaml.Marshal(obj)
	if err != nil {
		return err
	}
	if p.started {
		fmt.Fprintln(p.out, "---")
	}
	p.started = true
	_, err = p.out.Write(b)
	return err
}

// clean sets the type (the client leaves it empty) and drops managed
// fields, as kubectl get -o yaml does by default.
func clean(gs *v1alpha1.GitSync) {
	gs.APIVersion, gs.Kind = v1alpha1.GroupVersion.String(), "GitSync"
	gs.ManagedFields = nil
}

func (p *printer) header(w io.Writer) {
	if p.started {
		return
	}
	p.started = true
	cols := []string{"NAME", "READY", "REVISION", "DRIFT", "SUSPENDED", "AGE"}
	if p.allNamespaces {
		cols = append([]string{"NAMESPACE"}, cols...)
	}
	if p.format == "wide" {
		cols = append(cols, "LAST ATTEMPTED", "LAST SYNC", "SOURCE", "PATH")
	}
	cols = append(cols, "MESSAGE")
	fmt.Fprintln(w, strings.Join(cols, "\t"))
}

func (p *printer) row(w io.Writer, gs *v1alpha1.GitSync) {
	ready, msg := "Unknown", ""
	if c := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition); c != nil {
		ready, msg = string(c.Status), c.Message
	}
	drift := "-"
	if gs.Status.Drift != nil {
		drift = strconv.Itoa(gs.Status.Drift.Count)
	}
	rev := gs.Status.LastAppliedRevision
	if p.format != "wide" {
		rev = shortRevision(rev)
	}
	cols := []string{gs.Name, ready, dash(rev), drift, strconv.FormatBool(gs.Spec.Suspend), age(gs.CreationTimestamp, p.now)}
	if p.allNamespaces {
		cols = append([]string{gs.Namespace}, cols...)
	}
	if p.format == "wide" {
		last := ""
		if t := gs.Status.LastSyncTime; t != nil {
			last = age(*t, p.now)
		}
		cols = append(cols, dash(gs.Status.LastAttemptedRevision), dash(last), gs.Spec.Source.URL, dash(gs.Spec.Path))
	}
	// One row per GitSync: a multi-line message would break the table.
	cols = append(cols, strings.Join(strings.Fields(msg), " "))
	fmt.Fprintln(w, strings.Join(cols, "\t"))
}

// shortRevision turns main@sha1:<40 hex> into main@sha1:<12 hex>, enough to
// tell commits apart in a table; -o wide shows it whole.
func shortRevision(rev string) string {
	ref, sha, ok := strings.Cut(rev, "@sha1:")
	if !ok || len(sha) <= 12 {
		return rev
	}
	return ref + "@sha1:" + sha[:12]
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age prints how long ago t was as kubectl does (3m20s, 5h, 12d).
func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}
