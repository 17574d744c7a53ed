package devenv

import (
	"context"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

// DemoNamespace holds the demo GitSyncs.
const DemoNamespace = "tether-system"

// Demo describes one demo GitSync.
type Demo struct {
	Name, Path, Namespace string
}

// Demos are the GitSyncs the demo creates: the podinfo-like example's two
// environments, from the demo repository's main branch.
var Demos = []Demo{
	{Name: "podinfo-staging", Path: "./podinfo-like/overlays/staging", Namespace: "podinfo-staging"},
	{Name: "podinfo-production", Path: "./podinfo-like/overlays/production", Namespace: "podinfo-production"},
}

func createGitSyncs(ctx context.Context, c client.Client, url string, interval time.Duration) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: DemoNamespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", DemoNamespace, err)
	}
	for _, d := range Demos {
		gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: DemoNamespace}}
		err := retryUntilKnown(ctx, func() error {
			_, err := createOrUpdate(ctx, c, gs, func() {
				gs.Spec = v1alpha1.GitSyncSpec{
					Source:            v1alpha1.GitSource{URL: url, Ref: v1alpha1.GitRef{Branch: "main"}},
					Path:              d.Path,
					Interval:          metav1.Duration{Duration: interval},
					Prune:             true,
					AllowedNamespaces: []string{d.Namespace},
				}
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("GitSync %s/%s: %w", DemoNamespace, d.Name, err)
		}
	}
	return nil
}

func createOrUpdate(ctx context.Context, c client.Client, gs *v1alpha1.GitSync, mutate func()) (bool, error) {
	err := c.Get(ctx, client.ObjectKeyFromObject(gs), gs)
	if apierrors.IsNotFound(err) {
		mutate()
		return true, c.Create(ctx, gs)
	}
	if err != nil {
		return false, err
	}
	mutate()
	return false, c.Update(ctx, gs)
}

// retryUntilKnown retries fn while the API server does not know the GitSync
// kind yet (a CRD that was just installed takes a moment).
func retryUntilKnown(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := fn()
		if err == nil || !meta.IsNoMatchError(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// WaitReady waits until every demo GitSync has a Ready condition that is
// not Unknown, printing each as it settles, and returns them.
func WaitReady(ctx context.Context, c client.Client, out io.Writer, limit time.Duration) ([]v1alpha1.GitSync, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var done []v1alpha1.GitSync
	for _, d := range Demos {
		key := types.NamespacedName{Namespace: DemoNamespace, Name: d.Name}
		for {
			gs := v1alpha1.GitSync{}
			if err := c.Get(ctx, key, &gs); err != nil && !apierrors.IsNotFound(err) {
				return done, err
			}
			ready := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition)
			if ready != nil && ready.Status != metav1.ConditionUnknown && ready.ObservedGeneration == gs.Generation {
				fmt.Fprintf(out, "         %s: Ready=%s %s\n", key, ready.Status, ready.Message)
				done = append(done, gs)
				break
			}
			select {
			case <-ctx.Done():
				return done, fmt.Errorf("GitSync %s not settled after %s", key, limit)
			case <-time.After(300 * time.Millisecond):
			}
		}
	}
	return done, nil
}
