package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

func newEventsCmd() *cobra.Command {
	var kube kubeFlags
	cmd := &cobra.Command{
		Use:   "events NAME",
		Short: "Show the events of a GitSync and of the objects it applied, oldest first",
		Long: `events prints the Kubernetes events of a GitSync and of every object in its
inventory (status.inventory), sorted by time, oldest first, as
` + "`flux events`" + ` does. Events of cluster-scoped objects are read from the
default namespace, where Kubernetes records them.`,
		Example:           `  tether events app -n team-a`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: kube.completeGitSyncs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, gs, err := kube.gitSync(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			evs, err := gitSyncEvents(cmd.Context(), c, gs, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "no events for GitSync %s/%s or its objects\n", gs.Namespace, gs.Name)
				return nil
			}
			return printEvents(cmd.OutOrStdout(), evs, time.Now())
		},
	}
	kube.bind(cmd, false)
	return cmd
}

// objectKey identifies an object in events and inventories alike.
type objectKey struct {
	namespace, name, group, kind string
}

// inventoryKeys parses status.inventory's <namespace>_<name>_<group>_<kind>
// IDs; none of the four may hold an underscore.
func inventoryKeys(gs *v1alpha1.GitSync) []objectKey {
	if gs.Status.Inventory == nil {
		return nil
	}
	var keys []objectKey
	for _, e := range gs.Status.Inventory.Entries {
		p := strings.Split(e.ID, "_")
		if len(p) != 4 {
			continue
		}
		keys = append(keys, objectKey{namespace: p[0], name: p[1], group: p[2], kind: p[3]})
	}
	return keys
}

// gitSyncEvents lists the events of gs and of its inventory, oldest first.
// A namespace whose events the caller may not read is named on warn and
// skipped: a tenant still sees what it may see.
func gitSyncEvents(ctx context.Context, c client.Client, gs *v1alpha1.GitSync, warn io.Writer) ([]corev1.Event, error) {
	want := map[objectKey]bool{{namespace: gs.Namespace, name: gs.Name, group: v1alpha1.GroupVersion.Group, kind: "GitSync"}: true}
	namespaces := map[string]bool{gs.Namespace: true}
	for _, k := range inventoryKeys(gs) {
		want[k] = true
		if k.namespace == "" {
			namespaces[metav1.NamespaceDefault] = true
		} else {
			namespaces[k.namespace] = true
		}
	}
	var out []corev1.Event
	for ns := range namespaces {
		list := &corev1.EventList{}
		if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
			if ns == gs.Namespace {
				return nil, fmt.Errorf("GitSync %s/%s: list events: %w", gs.Namespace, gs.Name, err)
			}
			fmt.Fprintf(warn, "skipped the events in namespace %s: %v\n", ns, err)
			continue
		}
		for _, e := range list.Items {
			o := e.InvolvedObject
			gv, _ := schema.ParseGroupVersion(o.APIVersion)
			if want[objectKey{namespace: o.Namespace, name: o.Name, group: gv.Group, kind: o.Kind}] {
				out = append(out, e)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		ti, tj := eventTime(&out[i]), eventTime(&out[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// eventTime is when an event was last seen, whichever API wrote it: the
// events.k8s.io recorder the agent uses fills eventTime and series, the
// older core recorder lastTimestamp.
func eventTime(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

func printEvents(w io.Writer, evs []corev1.Event, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "LAST SEEN\tTYPE\tREASON\tOBJECT\tMESSAGE")
	for i := range evs {
		e := &evs[i]
		o := e.InvolvedObject.Kind + "/" + e.InvolvedObject.Name
		if e.InvolvedObject.Namespace != "" {
			o = e.InvolvedObject.Kind + "/" + e.InvolvedObject.Namespace + "/" + e.InvolvedObject.Name
		}
		seen := age(metav1.NewTime(eventTime(e)), now)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", seen, e.Type, e.Reason, o, strings.Join(strings.Fields(e.Message), " "))
	}
	return tw.Flush()
}
