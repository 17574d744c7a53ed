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

// measureDrift times drift handling on a GitSync of n objects: from an
// out-of-band change (another field manager edits one ConfigMap) to
// Drifted=True in the status (mode detect), and to the value being put
// back (mode correct). Each run edits a different ConfigMap.
func measureDrift(ctx context.Context, k *kube, url string, n, runs int) (detect, correct []time.Duration, err error) {
	name := fmt.Sprintf("drift-%d", n)
	if _, err := k.firstSync(ctx, name, name, url, fmt.Sprintf("./n%d", n)); err != nil {
		return nil, nil, err
	}
	key := types.NamespacedName{Namespace: name, Name: name}
	if err := k.setDriftMode(ctx, key, v1alpha1.DriftDetect); err != nil {
		return nil, nil, err
	}
	for i := 0; i < runs; i++ {
		start := time.Now()
		if err := k.edit(ctx, name, fmt.Sprintf("cm-%04d", i)); err != nil {
			return nil, nil, err
		}
		want := i + 1
		err := k.wait(ctx, key, func(gs *v1alpha1.GitSync) bool {
			return meta.IsStatusConditionTrue(gs.Status.Conditions, v1alpha1.DriftedCondition) &&
				gs.Status.Drift != nil && gs.Status.Drift.Count >= want
		})
		if err != nil {
			return nil, nil, err
		}
		detect = append(detect, time.Since(start))
	}
	if err := k.setDriftMode(ctx, key, v1alpha1.DriftCorrect); err != nil {
		return nil, nil, err
	}
	for i := 0; i < runs; i++ {
		cm := fmt.Sprintf("cm-%04d", runs+i)
		start := time.Now()
		if err := k.edit(ctx, name, cm); err != nil {
			return nil, nil, err
		}
		err := poll(ctx, func() (bool, error) {
			obj := &corev1.ConfigMap{}
			if err := k.c.Get(ctx, types.NamespacedName{Namespace: name, Name: cm}, obj); err != nil {
				return false, err
			}
			return obj.Data["payload"] != "edited", nil
		})
		if err != nil {
			return nil, nil, err
		}
		correct = append(correct, time.Since(start))
	}
	return detect, correct, nil
}

// edit changes a ConfigMap through another field manager, as kubectl edit.
func (k *kube) edit(ctx context.Context, ns, name string) error {
	cm := &corev1.ConfigMap{}
	if err := k.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, cm); err != nil {
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
