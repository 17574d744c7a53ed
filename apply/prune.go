package apply

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/utils"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

// PruneResult is what a Prune did.
type PruneResult struct {
	// ChangeSet has a "deleted" or "skipped" entry per object that left Git
	// and still existed.
	ChangeSet *ssa.ChangeSet
	// Kept are the Namespaces among the skipped ones that still hold
	// objects this GitSync never applied; deleting them would have deleted
	// those too.
	Kept []KeptNamespace
}

// Prune deletes the objects in old that are not in new, namespaced objects
// first, then cluster-scoped ones, then Namespaces, CRDs last. It skips (a
// "skipped" entry) an object annotated or labelled tether.dev/prune:
// disabled, an object whose live owner labels do not name owner, because
// another GitSync took it over or someone else made it, and a Namespace
// that still holds objects owner did not apply (see foreignObjects); an
// object already gone gets no entry. It never deletes what old does not
// list. A failure on one object does not stop the others; the error names
// each.
func (m *Manager) Prune(ctx context.Context, old, new *v1alpha1.ResourceInventory, owner Owner) (*PruneResult, error) {
	if owner.Name == "" || owner.Namespace == "" {
		return nil, errors.New("prune: the owner's name and namespace are required")
	}
	gone, err := Diff(old, new)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	res := &PruneResult{ChangeSet: ssa.NewChangeSet()}
	var errs []error
	for _, o := range gone {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		action, err := m.pruneOne(ctx, o, owner, old, res)
		if err != nil {
			errs = append(errs, &ObjectError{Object: utils.FmtUnstructured(o), Err: fmt.Errorf("prune failed: %w", err)})
			continue
		}
		if action != "" {
			res.ChangeSet.Add(ssa.ChangeSetEntry{
				ObjMetadata:  object.UnstructuredToObjMetadata(o),
				GroupVersion: o.GroupVersionKind().Version,
				Subject:      utils.FmtUnstructured(o),
				Action:       action,
			})
		}
	}
	return res, join(errs)
}

// pruneOne deletes o if the live object is this owner's and not protected.
// It returns "" when the object is already gone.
func (m *Manager) pruneOne(ctx context.Context, o *unstructured.Unstructured, owner Owner, old *v1alpha1.ResourceInventory, res *PruneResult) (ssa.Action, error) {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(o.GroupVersionKind())
	err := m.client.Get(ctx, client.ObjectKeyFromObject(o), live)
	switch {
	case apierrors.IsNotFound(err), meta.IsNoMatchError(err):
		// Gone, or its kind is: a custom resource whose CRD was deleted.
		return "", nil
	case err != nil:
		return "", err
	case live.GetDeletionTimestamp() != nil:
		return "", nil
	}
	if utils.AnyInMetadata(live, map[string]string{v1alpha1.PruneAnnotation: v1alpha1.Disabled}) {
		return ssa.SkippedAction, nil
	}
	labels := live.GetLabels()
	if labels[v1alpha1.NameLabel] != owner.Name || labels[v1alpha1.NamespaceLabel] != owner.Namespace {
		return ssa.SkippedAction, nil
	}
	if utils.IsNamespace(live) {
		// Deleting a Namespace deletes all it holds, ours or not.
		owned := map[string]bool{}
		for _, e := range old.Entries {
			owned[e.ID] = true
		}
		foreign, err := m.foreignObjects(ctx, live.GetName(), owned, owner)
		switch {
		case err != nil:
			res.Kept = append(res.Kept, KeptNamespace{Name: live.GetName(), Reason: fmt.Sprintf("Namespace %s left Git but was not deleted: cannot tell what else it holds: %v", live.GetName(), err)})
			return ssa.SkippedAction, nil
		case len(foreign) > 0:
			res.Kept = append(res.Kept, KeptNamespace{Name: live.GetName(), Reason: keepReason(live.GetName(), foreign)})
			return ssa.SkippedAction, nil
		}
	}
	// The UID precondition keeps a delete from hitting an object that was
	// replaced since the Get above.
	uid := live.GetUID()
	err = m.client.Delete(ctx, live,
		client.Preconditions{UID: &uid},
		client.PropagationPolicy(metav1.DeletePropagationBackground))
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return ssa.DeletedAction, nil
}

// sortForPrune orders objs for deletion: the reverse of the apply stages.
// Namespaced objects go first, then cluster-scoped ones, then Namespaces,
// CRDs last; within each, the reverse of ssa's apply order.
func sortForPrune(objs []*unstructured.Unstructured) {
	rank := func(o *unstructured.Unstructured) int {
		switch {
		case utils.IsCRD(o):
			return 3
		case utils.IsNamespace(o):
			return 2
		case o.GetNamespace() == "":
			return 1
		}
		return 0
	}
	apply := ssa.SortableUnstructureds(objs)
	sort.SliceStable(objs, func(i, j int) bool {
		if ri, rj := rank(objs[i]), rank(objs[j]); ri != rj {
			return ri < rj
		}
		return apply.Less(j, i)
	})
}
