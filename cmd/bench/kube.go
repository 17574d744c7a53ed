package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// waitLimit bounds every wait; a first sync of 5000 objects takes minutes here.
const waitLimit = 15 * time.Minute

type kube struct{ c client.Client }

func newKube(cp *testenv.ControlPlane) *kube {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	c, err := client.New(cp.Config, client.Options{Scheme: s})
	if err != nil {
		panic(err)
	}
	return &kube{c: c}
}

// tenant creates namespace ns whose GitSyncs apply as its
// testenv.DeployerAccount (the agent's --default-service-account), bound
// to cluster-admin, so that the benchmark measures the path every GitSync
// outside the agent's namespace takes: impersonation.
func (k *kube) tenant(ctx context.Context, ns string) error {
	if err := k.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	_, err := testenv.GrantDeployer(ctx, k.c, ns, "cluster-admin", true)
	return err
}

// firstSync creates a GitSync and returns the time until it is Ready.
func (k *kube) firstSync(ctx context.Context, name, ns, url, path string) (time.Duration, error) {
	if err := k.tenant(ctx, ns); err != nil {
		return 0, err
	}
	gs := &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.GitSyncSpec{
			Source:   v1alpha1.GitSource{URL: url},
			Path:     path,
			Interval: metav1.Duration{Duration: time.Hour},
			Prune:    true,
		},
	}
	start := time.Now()
	if err := k.c.Create(ctx, gs); err != nil {
		return 0, err
	}
	err := k.wait(ctx, client.ObjectKeyFromObject(gs), func(gs *v1alpha1.GitSync) bool {
		return meta.IsStatusConditionTrue(gs.Status.Conditions, v1alpha1.ReadyCondition)
	})
	return time.Since(start), err
}

// resync sets the resync annotation and returns the time until the agent
// echoes it with Ready=True.
func (k *kube) resync(ctx context.Context, name, value string) (time.Duration, error) {
	key := types.NamespacedName{Namespace: name, Name: name}
	gs := &v1alpha1.GitSync{}
	if err := k.c.Get(ctx, key, gs); err != nil {
		return 0, err
	}
	patch := client.MergeFrom(gs.DeepCopy())
	metav1.SetMetaDataAnnotation(&gs.ObjectMeta, v1alpha1.ResyncAnnotation, value)
	start := time.Now()
	if err := k.c.Patch(ctx, gs, patch); err != nil {
		return 0, err
	}
	err := k.wait(ctx, key, func(gs *v1alpha1.GitSync) bool {
		return gs.Status.LastHandledResyncAt == value &&
			meta.IsStatusConditionTrue(gs.Status.Conditions, v1alpha1.ReadyCondition)
	})
	return time.Since(start), err
}

// deleteSync deletes the GitSync and waits until its objects are pruned, so
// that runs don't pile up objects in the API server.
func (k *kube) deleteSync(ctx context.Context, name, ns string) error {
	gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	if err := k.c.Delete(ctx, gs); err != nil {
		return err
	}
	return poll(ctx, func() (bool, error) {
		err := k.c.Get(ctx, client.ObjectKeyFromObject(gs), gs)
		return client.IgnoreNotFound(err) == nil && err != nil, client.IgnoreNotFound(err)
	})
}

func (k *kube) wait(ctx context.Context, key types.NamespacedName, done func(*v1alpha1.GitSync) bool) error {
	return poll(ctx, func() (bool, error) {
		gs := &v1alpha1.GitSync{}
		if err := k.c.Get(ctx, key, gs); err != nil {
			return false, err
		}
		if c := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition); c != nil && c.Status == metav1.ConditionFalse {
			return false, fmt.Errorf("GitSync %s failed: %s", key, c.Message)
		}
		return done(gs), nil
	})
}

func poll(ctx context.Context, fn func() (bool, error)) error {
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		ok, err := fn()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("not done after %s", waitLimit)
}
