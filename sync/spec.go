package sync

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/apply"
	"tether.dev/tether/source"
)

// validate catches spec errors the CRD schema cannot express.
func (r *Reconciler) validate(gs *v1alpha1.GitSync) error {
	if err := SourceRef(gs).Validate(); err != nil {
		return fmt.Errorf("spec.source.ref: %w", err)
	}
	if gs.Spec.Source.URL == "" {
		return errors.New("spec.source.url is empty")
	}
	if _, err := policy(gs); err != nil {
		return err
	}
	if r.NoCrossNamespaceRefs {
		for _, d := range gs.Spec.DependsOn {
			if d.Namespace != "" && d.Namespace != gs.Namespace {
				return fmt.Errorf("spec.dependsOn: %s/%s is in another namespace, and this agent refuses cross-namespace references", d.Namespace, d.Name)
			}
		}
	}
	return nil
}

// SourceRef is the spec's ref, the branch main when none is given.
func SourceRef(gs *v1alpha1.GitSync) source.Ref {
	r := gs.Spec.Source.Ref
	if r == (v1alpha1.GitRef{}) {
		return source.Ref{Branch: "main"}
	}
	return source.Ref{Branch: r.Branch, Tag: r.Tag, Semver: r.Semver, Commit: r.Commit}
}

// targetNamespace is where namespaced objects without a namespace go.
func targetNamespace(gs *v1alpha1.GitSync) string {
	if gs.Spec.TargetNamespace != "" {
		return gs.Spec.TargetNamespace
	}
	return gs.Namespace
}

// sameFailure reports whether the Ready condition already says this.
func sameFailure(gs *v1alpha1.GitSync, reason, msg string) bool {
	c := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition)
	return c != nil && c.Status == "False" && c.Reason == reason && c.Message == msg
}

// finalize runs when a GitSync is being deleted: with prune enabled (and
// not suspended) it deletes what the GitSync applied, then lets it go.
func (r *Reconciler) finalize(ctx context.Context, gs *v1alpha1.GitSync) error {
	key := ctrl.ObjectKeyFromObject(gs)
	r.forget(key)
	if !controllerutil.ContainsFinalizer(gs, Finalizer) {
		return nil
	}
	if gs.Spec.Prune && !gs.Spec.Suspend && gs.Status.Inventory != nil {
		owner := ownerOf(gs)
		applier, err := r.applierFor(gs)
		if err != nil {
			return fmt.Errorf("GitSync %s: prune on deletion: %w", key, err)
		}
		cs, err := applier.Prune(ctx, gs.Status.Inventory, &v1alpha1.ResourceInventory{}, owner)
		if err != nil {
			return fmt.Errorf("GitSync %s: prune on deletion: %w", key, err)
		}
		logr.FromContextOrDiscard(ctx).Info("pruned on deletion", "summary", summarize(countActions(cs)))
	}
	patch := ctrl.MergeFrom(gs.DeepCopy())
	controllerutil.RemoveFinalizer(gs, Finalizer)
	if err := r.Client.Patch(ctx, gs, patch); err != nil {
		return fmt.Errorf("GitSync %s: remove finalizer: %w", key, err)
	}
	return nil
}

func ownerOf(gs *v1alpha1.GitSync) apply.Owner {
	return apply.Owner{Name: gs.Name, Namespace: gs.Namespace}
}
