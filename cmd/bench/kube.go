package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// waitLimit bounds every wait; a first sync of 5000 objects takes minutes
// on a slow engine.
const waitLimit = 15 * time.Minute

// kube is the benchmark's own client: the admin user, rate limits high
// enough that the benchmark never waits on itself.
type kube struct {
	c    client.WithWatch
	http *http.Client // for /metrics
	host string
}

func newKube(cfg *rest.Config) (*kube, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 1000, 2000
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: s})
	if err != nil {
		return nil, err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	return &kube{c: c, http: hc, host: strings.TrimSuffix(cfg.Host, "/")}, nil
}

// tenant creates namespace ns whose GitSyncs apply as its
// testenv.DeployerAccount (the agent's --default-service-account), so
// that the benchmark measures the path every GitSync outside the agent's
// namespace takes: impersonation. clusterWide binds the account to
// cluster-admin across the cluster (a GitSync that writes to other
// namespaces), else only in ns.
func (k *kube) tenant(ctx context.Context, ns string, clusterWide bool) error {
	if err := k.namespaces(ctx, ns); err != nil {
		return err
	}
	_, err := testenv.GrantDeployer(ctx, k.c, ns, "cluster-admin", clusterWide)
	return err
}

// namespaces creates the namespaces that don't exist yet.
func (k *kube) namespaces(ctx context.Context, names ...string) error {
	for _, n := range names {
		err := k.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// purge deletes every ConfigMap, Deployment and Service in the namespaces,
// one delete-collection request per kind and namespace, so that finished
// runs don't leave objects behind that later ones would watch or list.
// (Namespaces themselves stay: without a controller manager a deleted
// namespace never finishes terminating.)
func (k *kube) purge(ctx context.Context, namespaces ...string) error {
	for _, ns := range namespaces {
		for _, obj := range []client.Object{&corev1.ConfigMap{}, &appsv1.Deployment{}} {
			if err := k.c.DeleteAllOf(ctx, obj, client.InNamespace(ns)); err != nil {
				return fmt.Errorf("purge %T in %s: %w", obj, ns, err)
			}
		}
		// Services have no delete-collection; there are few enough.
		var svcs corev1.ServiceList
		if err := k.c.List(ctx, &svcs, client.InNamespace(ns)); err != nil {
			return err
		}
		for i := range svcs.Items {
			if err := client.IgnoreNotFound(k.c.Delete(ctx, &svcs.Items[i])); err != nil {
				return err
			}
		}
	}
	return nil
}

func gitSync(name, ns, url, path string, interval time.Duration) *v1alpha1.GitSync {
	return &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.GitSyncSpec{
			Source:   v1alpha1.GitSource{URL: url, Ref: v1alpha1.GitRef{Branch: "main"}},
			Path:     path,
			Interval: metav1.Duration{Duration: interval},
			Prune:    true,
		},
	}
}

// firstSync creates the GitSync and returns the time until it is Ready.
func (k *kube) firstSync(ctx context.Context, gs *v1alpha1.GitSync) (time.Duration, error) {
	start := time.Now()
	if err := k.c.Create(ctx, gs); err != nil {
		return 0, err
	}
	err := k.wait(ctx, client.ObjectKeyFromObject(gs), func(gs *v1alpha1.GitSync) bool {
		return ready(gs)
	})
	return time.Since(start), err
}

func ready(gs *v1alpha1.GitSync) bool {
	return gs.Status.ObservedGeneration == gs.Generation &&
		meta.IsStatusConditionTrue(gs.Status.Conditions, v1alpha1.ReadyCondition)
}

// resync sets the resync annotation and returns the time until the agent
// echoes it with Ready=True.
func (k *kube) resync(ctx context.Context, key types.NamespacedName, value string) (time.Duration, error) {
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
		return gs.Status.LastHandledResyncAt == value && ready(gs)
	})
	return time.Since(start), err
}

// release deletes a GitSync without pruning (spec.prune off first) and
// waits until it is gone; purge then removes its objects in a few
// requests instead of one delete per object from the agent.
func (k *kube) release(ctx context.Context, key types.NamespacedName) error {
	gs := &v1alpha1.GitSync{}
	if err := k.c.Get(ctx, key, gs); err != nil {
		return client.IgnoreNotFound(err)
	}
	if gs.Spec.Prune {
		patch := client.MergeFrom(gs.DeepCopy())
		gs.Spec.Prune = false
		if err := k.c.Patch(ctx, gs, patch); err != nil {
			return err
		}
	}
	if err := client.IgnoreNotFound(k.c.Delete(ctx, gs)); err != nil {
		return err
	}
	return poll(ctx, func() (bool, error) {
		err := k.c.Get(ctx, key, &v1alpha1.GitSync{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

// wait watches the GitSync key until done accepts it, or it fails. A
// watch, not a poll: reading a GitSync of thousands of inventory entries
// every few milliseconds would load the API server the agent is timed on.
func (k *kube) wait(ctx context.Context, key types.NamespacedName, done func(*v1alpha1.GitSync) bool) error {
	var failure error
	err := k.observe(ctx, &v1alpha1.GitSyncList{}, func(o client.Object) bool {
		gs := o.(*v1alpha1.GitSync)
		if failure = failed(gs); failure != nil {
			return true
		}
		return done(gs)
	}, client.InNamespace(key.Namespace), client.MatchingFields{"metadata.name": key.Name})
	if err != nil {
		return err
	}
	return failure
}

// failed tells a sync that failed (Stalled, or Ready=False with no sync in
// progress) from one still on its way, so that a broken engine stops the
// benchmark instead of running into waitLimit.
func failed(gs *v1alpha1.GitSync) error {
	if gs.Status.ObservedGeneration != gs.Generation {
		return nil
	}
	c := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition)
	if meta.IsStatusConditionTrue(gs.Status.Conditions, v1alpha1.StalledCondition) ||
		c != nil && c.Status == metav1.ConditionFalse && !meta.IsStatusConditionTrue(gs.Status.Conditions, v1alpha1.ReconcilingCondition) {
		msg := ""
		if c != nil {
			msg = c.Reason + ": " + c.Message
		}
		return fmt.Errorf("GitSync %s/%s failed: %s", gs.Namespace, gs.Name, msg)
	}
	return nil
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

// observe lists what list and opts select, then watches it, calling fn for
// every object it sees (listed, added or modified) until fn returns true,
// ctx ends or waitLimit passes. A watch is how the benchmark waits for
// thousands of objects without listing them over and over.
func (k *kube) observe(ctx context.Context, list client.ObjectList, fn func(client.Object) bool, opts ...client.ListOption) error {
	ctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	for {
		if err := k.c.List(ctx, list, opts...); err != nil {
			return err
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return err
		}
		for _, it := range items {
			if fn(it.(client.Object)) {
				return nil
			}
		}
		rv := list.(metav1.ListInterface).GetResourceVersion()
		for {
			w, err := k.c.Watch(ctx, list, append(opts, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})...)
			if err != nil {
				return err
			}
			gone := false
			for ev := range w.ResultChan() {
				switch ev.Type {
				case watch.Added, watch.Modified:
					obj := ev.Object.(client.Object)
					rv = obj.GetResourceVersion()
					if fn(obj) {
						w.Stop()
						return nil
					}
				case watch.Bookmark:
					rv = ev.Object.(client.Object).GetResourceVersion()
				case watch.Error:
					gone = true
				}
			}
			w.Stop()
			if ctx.Err() != nil {
				return fmt.Errorf("watch: %w", ctx.Err())
			}
			if gone {
				break // list again
			}
		}
	}
}

// dropGitSyncs deletes every GitSync with its finalizers removed, for when
// no agent runs: nothing is pruned, purge takes the objects.
func (k *kube) dropGitSyncs(ctx context.Context) error {
	var list v1alpha1.GitSyncList
	if err := k.c.List(ctx, &list); err != nil {
		return err
	}
	for i := range list.Items {
		gs := &list.Items[i]
		if err := k.c.Patch(ctx, gs, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("GitSync %s/%s: %w", gs.Namespace, gs.Name, err)
		}
		if err := k.c.Delete(ctx, gs); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("GitSync %s/%s: %w", gs.Namespace, gs.Name, err)
		}
	}
	return nil
}
