package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

// defaultNamespace is where -n points when neither the flag nor the
// kubeconfig context names a namespace: the agent's own, which holds the
// platform team's GitSyncs (flux's verbs default to flux-system alike).
const defaultNamespace = "tether-system"

// kubeFlags are the flags every verb that talks to the cluster shares, with
// kubectl's and flux's names.
type kubeFlags struct {
	kubeconfig    string
	context       string
	namespace     string
	allNamespaces bool
}

// bind adds --kubeconfig, --context and -n; withAll adds -A for verbs that
// list.
func (k *kubeFlags) bind(cmd *cobra.Command, withAll bool) {
	f := cmd.Flags()
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
	f.StringVar(&k.context, "context", "", "kubeconfig context to use (default: the current context)")
	f.StringVarP(&k.namespace, "namespace", "n", "", "namespace of the GitSync (default: the context's namespace, else "+defaultNamespace+")")
	if withAll {
		f.BoolVarP(&k.allNamespaces, "all-namespaces", "A", false, "list GitSyncs in every namespace")
	}
	_ = cmd.RegisterFlagCompletionFunc("namespace", k.completeNamespaces)
}

// loader is the kubeconfig the flags select, not yet read.
func (k *kubeFlags) loader() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if k.kubeconfig != "" {
		rules.ExplicitPath = k.kubeconfig
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context})
}

// config returns the REST config and the namespace the flags select.
func (k *kubeFlags) config() (*rest.Config, string, error) {
	l := k.loader()
	cfg, err := l.ClientConfig()
	if err != nil {
		if k.kubeconfig == "" && k.context == "" {
			if inCluster, ierr := rest.InClusterConfig(); ierr == nil {
				return inCluster, k.orDefault(""), nil
			}
		}
		return nil, "", fmt.Errorf("no cluster to talk to: %w", err)
	}
	ns, explicit, err := l.Namespace()
	if err != nil || !explicit {
		ns = ""
	}
	return cfg, k.orDefault(ns), nil
}

func (k *kubeFlags) orDefault(contextNS string) string {
	switch {
	case k.namespace != "":
		return k.namespace
	case contextNS != "":
		return contextNS
	}
	return defaultNamespace
}

// client returns a client of the selected cluster and the namespace.
func (k *kubeFlags) client() (client.WithWatch, string, error) {
	cfg, ns, err := k.config()
	if err != nil {
		return nil, "", err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: newScheme()})
	if err != nil {
		return nil, "", err
	}
	return c, ns, nil
}

// getGitSync reads one GitSync and says plainly when there is none.
// gitSync connects and reads the GitSync a verb's NAME argument names, in
// the namespace the flags select.
func (k *kubeFlags) gitSync(ctx context.Context, name string) (client.WithWatch, *v1alpha1.GitSync, error) {
	c, ns, err := k.client()
	if err != nil {
		return nil, nil, err
	}
	gs, err := getGitSync(ctx, c, types.NamespacedName{Namespace: ns, Name: name})
	return c, gs, err
}

// waitAndPrint waits until the agent handled the resync value, then
// prints the applied revision, as reconcile and resume end.
func waitAndPrint(ctx context.Context, c client.Client, key types.NamespacedName, value string, timeout time.Duration, out, log io.Writer) error {
	fmt.Fprintln(log, "◎ waiting for the sync to finish")
	rev, err := waitHandled(ctx, c, key, value, timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "✔ applied revision %s\n", rev)
	return nil
}

func getGitSync(ctx context.Context, c client.Client, key types.NamespacedName) (*v1alpha1.GitSync, error) {
	gs := &v1alpha1.GitSync{}
	if err := c.Get(ctx, key, gs); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("GitSync %s not found", key)
		}
		return nil, fmt.Errorf("GitSync %s: %w", key, err)
	}
	return gs, nil
}

// requestSync sets the resync annotation to a new value, together with
// spec.suspend when suspend is not nil, in one patch, and returns the value
// that status.lastHandledResyncAt will echo once the agent has handled it.
// The agent lists the Git ref again for every new value, so the sync sees
// the newest commit.
func requestSync(ctx context.Context, c client.Client, gs *v1alpha1.GitSync, suspend *bool) (string, error) {
	key := client.ObjectKeyFromObject(gs)
	value := time.Now().UTC().Format(time.RFC3339Nano)
	patch := client.MergeFrom(gs.DeepCopy())
	metav1.SetMetaDataAnnotation(&gs.ObjectMeta, v1alpha1.ResyncAnnotation, value)
	if suspend != nil {
		gs.Spec.Suspend = *suspend
	}
	if err := c.Patch(ctx, gs, patch); err != nil {
		return "", fmt.Errorf("GitSync %s: set %s: %w", key, v1alpha1.ResyncAnnotation, err)
	}
	return value, nil
}

// errNotHandled says the agent did not echo the request in time.
var errNotHandled = errors.New("the agent did not handle the request in time (is it running?)")

// waitHandled waits until the agent echoes value in
// status.lastHandledResyncAt, then returns the GitSync's applied revision,
// or an error with the Ready condition's message when the sync failed.
func waitHandled(ctx context.Context, c client.Client, key types.NamespacedName, value string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last := &v1alpha1.GitSync{} // as last read: what to report on a timeout
	for {
		gs := &v1alpha1.GitSync{}
		err := c.Get(ctx, key, gs)
		if err == nil {
			last = gs
		}
		if err == nil && gs.Status.LastHandledResyncAt == value {
			ready := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition)
			if ready == nil || ready.Status != metav1.ConditionTrue {
				return "", fmt.Errorf("GitSync %s: sync failed: %s", key, conditionText(ready))
			}
			return gs.Status.LastAppliedRevision, nil
		}
		if err != nil && apierrors.IsNotFound(err) {
			return "", fmt.Errorf("GitSync %s was deleted", key)
		}
		select {
		case <-ctx.Done():
			why := errNotHandled
			if ctx.Err() != context.DeadlineExceeded {
				why = ctx.Err()
			}
			// A failure before the sync starts (Git unreachable) leaves the
			// request pending and retries: say what the GitSync shows now.
			ready := meta.FindStatusCondition(last.Status.Conditions, v1alpha1.ReadyCondition)
			return "", fmt.Errorf("GitSync %s: %w; after %s it shows %s", key, why, timeout, conditionText(ready))
		case <-tick.C:
		}
	}
}

// conditionText renders a condition as "Ready=False (Reason): message".
func conditionText(c *metav1.Condition) string {
	if c == nil {
		return "no Ready condition yet"
	}
	return fmt.Sprintf("%s=%s (%s): %s", c.Type, c.Status, c.Reason, c.Message)
}

// completeGitSyncs completes GitSync names in the namespace the command's
// flags select.
func (k *kubeFlags) completeGitSyncs(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, ns, err := k.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	list := &v1alpha1.GitSyncList{}
	if err := c.List(cmd.Context(), list, client.InNamespace(ns)); err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, gs := range list.Items {
		names = append(names, gs.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeNamespaces completes -n with the cluster's namespaces.
func (k *kubeFlags) completeNamespaces(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	c, _, err := k.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	list := &corev1.NamespaceList{}
	if err := c.List(cmd.Context(), list); err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, ns := range list.Items {
		names = append(names, ns.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
