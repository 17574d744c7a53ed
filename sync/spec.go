package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/validation"
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
	if ref := gs.Spec.Source.SecretRef; ref != nil {
		if msgs := validation.IsDNS1123Subdomain(ref.Name); len(msgs) > 0 {
			return fmt.Errorf("spec.source.secretRef.name %q: a Secret of the GitSync's own namespace is named by its name alone: %s", ref.Name, strings.Join(msgs, "; "))
		}
	}
	if _, err := r.serviceAccount(gs); err != nil {
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

// serviceAccount is the account of the GitSync's namespace that its syncs
// act as: spec.serviceAccountName, else the agent's default. It is "" (the
// agent's own rights) only for a GitSync in the agent's namespace; any other
// GitSync without an account is refused, so a namespace tenant who may
// create GitSyncs never borrows the agent's rights.
func (r *Reconciler) serviceAccount(gs *v1alpha1.GitSync) (string, error) {
	sa := gs.Spec.ServiceAccountName
	if sa != "" {
		if msgs := validation.IsDNS1123Subdomain(sa); len(msgs) > 0 {
			return "", &StageError{Reason: v1alpha1.ReasonInvalidSpec, User: true,
				Err: fmt.Errorf("spec.serviceAccountName %q: a service account of the GitSync's own namespace is named by its name alone: %s", sa, strings.Join(msgs, "; "))}
		}
		return sa, nil
	}
	if r.AgentNamespace != "" && gs.Namespace == r.AgentNamespace {
		return "", nil
	}
	if r.DefaultServiceAccount != "" {
		return r.DefaultServiceAccount, nil
	}
	return "", &StageError{Reason: v1alpha1.ReasonServiceAccountRequired, User: true,
		Err: fmt.Errorf("GitSync %s/%s names no spec.serviceAccountName and the agent has no --default-service-account: outside the agent's namespace %q a GitSync never applies with the agent's own rights", gs.Namespace, gs.Name, r.AgentNamespace)}
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
// not suspended) it deletes what the GitSync applied, then lets it go. A
// prune that cannot run keeps the finalizer, so nothing is orphaned by a
// passing failure, except when the GitSync's own namespace is being
// deleted: then the RoleBinding that its service account needs may be gone
// already and waiting would hold the namespace in Terminating forever, so
// the finalizer gives up with a Warning event.
func (r *Reconciler) finalize(ctx context.Context, gs *v1alpha1.GitSync) error {
	key := ctrl.ObjectKeyFromObject(gs)
	r.forget(key)
	if !controllerutil.ContainsFinalizer(gs, Finalizer) {
		return nil
	}
	if gs.Spec.Prune && !gs.Spec.Suspend && gs.Status.Inventory != nil {
		if err := r.pruneAll(ctx, gs); err != nil {
			if !r.namespaceTerminating(ctx, gs.Namespace) {
				return err
			}
			r.Recorder.Eventf(gs, nil, corev1.EventTypeWarning, v1alpha1.ReasonFinalizerAbandoned, "Finalize",
				"namespace %s is being deleted and the prune on deletion failed, so %d applied object(s) may remain (those in this namespace go with it): %v",
				gs.Namespace, len(gs.Status.Inventory.Entries), err)
			logr.FromContextOrDiscard(ctx).Error(err, "prune on deletion abandoned: the GitSync's namespace is being deleted")
		}
	}
	patch := ctrl.MergeFrom(gs.DeepCopy())
	controllerutil.RemoveFinalizer(gs, Finalizer)
	if err := r.Client.Patch(ctx, gs, patch); err != nil {
		return fmt.Errorf("GitSync %s: remove finalizer: %w", key, err)
	}
	return nil
}

// pruneAll deletes everything in the GitSync's inventory, as its syncs'
// service account.
func (r *Reconciler) pruneAll(ctx context.Context, gs *v1alpha1.GitSync) error {
	key := ctrl.ObjectKeyFromObject(gs)
	applier, err := r.applierFor(gs)
	if err != nil {
		return fmt.Errorf("GitSync %s: prune on deletion: %w", key, err)
	}
	res, err := applier.Prune(ctx, gs.Status.Inventory, &v1alpha1.ResourceInventory{}, ownerOf(gs))
	if err != nil {
		return fmt.Errorf("GitSync %s: prune on deletion: %w", key, err)
	}
	r.reportKept(gs, res.Kept)
	logr.FromContextOrDiscard(ctx).Info("pruned on deletion", "summary", summarize(countActions(res.ChangeSet)))
	return nil
}

// namespaceTerminating reports whether namespace ns is being deleted (or
// already gone). It reads the API server directly: the agent caches no
// Namespaces.
func (r *Reconciler) namespaceTerminating(ctx context.Context, ns string) bool {
	if r.APIReader == nil {
		return false
	}
	obj := &corev1.Namespace{}
	if err := r.APIReader.Get(ctx, ctrl.ObjectKey{Name: ns}, obj); err != nil {
		return apierrors.IsNotFound(err)
	}
	return obj.DeletionTimestamp != nil
}

func ownerOf(gs *v1alpha1.GitSync) apply.Owner {
	return apply.Owner{Name: gs.Name, Namespace: gs.Namespace}
}
