package main

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

// synced is a Ready GitSync of a mixed set (objects.go) that the drift and
// status benchmarks work on.
type synced struct {
	key      types.NamespacedName
	nsPrefix string
	n        int
}

// configMap names the ConfigMap of the i-th app, counting only apps that
// have one (all do), spread over the namespaces.
func (s synced) configMap(i int) types.NamespacedName {
	apps := (s.n + 2) / 3
	app := (i * 7) % apps
	return types.NamespacedName{Namespace: fmt.Sprintf("%s-%d", s.nsPrefix, app%mixNamespaces), Name: fmt.Sprintf("app-%04d", app)}
}

// measureCorrect times drift correction (mode correct, the default): from
// an out-of-band change (another field manager edits one ConfigMap) until
// the value is put back. Each run edits a different ConfigMap.
func measureCorrect(ctx context.Context, k *kube, s synced, runs int) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i < runs; i++ {
		key := s.configMap(i)
		start := time.Now()
		if err := k.edit(ctx, key); err != nil {
			return nil, err
		}
		err := k.observe(ctx, &corev1.ConfigMapList{}, func(o client.Object) bool {
			cm := o.(*corev1.ConfigMap)
			return cm.Name == key.Name && cm.Data["payload"] != "edited"
		}, client.InNamespace(key.Namespace), client.MatchingFields{"metadata.name": key.Name})
		if err != nil {
			return nil, fmt.Errorf("ConfigMap %s not corrected: %w", key, err)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// measureDetect switches the GitSync to mode detect and times an
// out-of-band change → Drifted=True with the count in the status.
func measureDetect(ctx context.Context, k *kube, s synced, runs, offset int) ([]time.Duration, error) {
	if err := k.setDriftMode(ctx, s.key, v1alpha1.DriftDetect); err != nil {
		return nil, err
	}
	var out []time.Duration
	for i := 0; i < runs; i++ {
		start := time.Now()
		if err := k.edit(ctx, s.configMap(offset+i)); err != nil {
			return nil, err
		}
		want := i + 1
		err := k.wait(ctx, s.key, func(gs *v1alpha1.GitSync) bool {
			return meta.IsStatusConditionTrue(gs.Status.Conditions, v1alpha1.DriftedCondition) &&
				gs.Status.Drift != nil && gs.Status.Drift.Count >= want
		})
		if err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// edit changes a ConfigMap through another field manager, as kubectl edit.
func (k *kube) edit(ctx context.Context, key types.NamespacedName) error {
	cm := &corev1.ConfigMap{}
	if err := k.c.Get(ctx, key, cm); err != nil {
		return err
	}
	patch := client.MergeFrom(cm.DeepCopy())
	cm.Data["payload"] = "edited"
	return k.c.Patch(ctx, cm, patch, client.FieldOwner("bench-edit"))
}

// setDriftMode changes spec.drift.mode and waits for the sync it causes.
func (k *kube) setDriftMode(ctx context.Context, key types.NamespacedName, mode string) error {
	gs := &v1alpha1.GitSync{}
	if err := k.c.Get(ctx, key, gs); err != nil {
		return err
	}
	patch := client.MergeFrom(gs.DeepCopy())
	gs.Spec.Drift.Mode = mode
	if err := k.c.Patch(ctx, gs, patch); err != nil {
		return err
	}
	gen := gs.Generation
	return k.wait(ctx, key, func(gs *v1alpha1.GitSync) bool {
		return gs.Status.ObservedGeneration >= gen && meta.IsStatusConditionTrue(gs.Status.Conditions, v1alpha1.ReadyCondition)
	})
}
