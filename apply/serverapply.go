package apply

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	ssaerrors "github.com/fluxcd/pkg/ssa/errors"
	"github.com/fluxcd/pkg/ssa/utils"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

// Why not ssa's ApplyAll: it reads every object, server-side dry-runs it,
// then applies the changed ones one after the other: three requests per new
// object, the last third serial. Server-side apply is idempotent and the
// API server does not write (nor bump the resourceVersion of) an object an
// apply leaves as it was, so one apply request per object is enough when
// the caller knows what existed before: one metadata-only LIST per kind
// and namespace tells it. Then an object absent before is created, one
// whose resourceVersion the apply kept is unchanged, any other configured.

// forceSelector marks the objects that are deleted and recreated when an
// immutable field changed.
var forceSelector = map[string]string{v1alpha1.ForceAnnotation: v1alpha1.Enabled}

// applySet applies objs (one stage or one namespace group) with server-side
// apply, at most m.objectConcurrency requests at a time. prev tells which
// existed before; objects of a kind that was not served when prev was
// made (its CRD is in the plan) are looked up here. Every object is tried;
// the change set holds those applied, the error names each that failed.
func (m *Manager) applySet(ctx context.Context, objs []*unstructured.Unstructured, prev *lookup, timeout time.Duration) (*ssa.ChangeSet, error) {
	var late []*unstructured.Unstructured
	for _, o := range objs {
		if prev.unserved[o.GroupVersionKind().GroupKind()] {
			late = append(late, o)
		}
	}
	before := prev.objs
	if len(late) > 0 {
		more, err := m.existing(ctx, late)
		if err != nil {
			return ssa.NewChangeSet(), err
		}
		before = maps.Clone(before)
		maps.Copy(before, more.objs)
	}
	entries := make([]*ssa.ChangeSetEntry, len(objs))
	errs := parallel(ctx, len(objs), m.objectConcurrency, func(i int) error {
		var err error
		entries[i], err = m.applyOne(ctx, objs[i], before[object.UnstructuredToObjMetadata(objs[i])], timeout)
		return err
	})
	cs := ssa.NewChangeSet()
	var failed []error
	for i := range objs {
		if entries[i] != nil {
			cs.Add(*entries[i])
		}
		if errs[i] != nil {
			failed = append(failed, errs[i])
		}
	}
	return cs, join(failed)
}

// applyOne applies o; prev is its metadata before, nil when it did not
// exist. On an immutable-field error an object marked with the force
// annotation (in Git or in the cluster) is deleted, its deletion awaited
// (finalizers) within timeout, and applied again.
func (m *Manager) applyOne(ctx context.Context, o *unstructured.Unstructured, prev *metav1.PartialObjectMetadata, timeout time.Duration) (*ssa.ChangeSetEntry, error) {
	id := utils.FmtUnstructured(o)
	applied := o.DeepCopy()
	utils.RemoveCABundleFromCRD(applied)
	err := m.client.Patch(ctx, applied, client.Apply, client.ForceOwnership, client.FieldOwner(m.fieldManager))
	if err != nil && prev != nil && ssaerrors.IsImmutableError(err) &&
		(utils.AnyInMetadata(o, forceSelector) || anyInMeta(prev, forceSelector)) {
		if err := m.recreate(ctx, o, timeout); err != nil {
			return nil, &ObjectError{Object: id, Err: fmt.Errorf("immutable field changed, recreate failed: %w", err)}
		}
		prev = nil
		applied = o.DeepCopy()
		utils.RemoveCABundleFromCRD(applied)
		err = m.client.Patch(ctx, applied, client.Apply, client.ForceOwnership, client.FieldOwner(m.fieldManager))
	}
	if err != nil {
		return nil, applyError(id, err)
	}
	if l, ok := ctx.Value(liveKey{}).(*liveVersions); ok {
		l.set(applied)
	}
	action := ssa.ConfiguredAction
	switch {
	case prev == nil:
		action = ssa.CreatedAction
	case prev.GetResourceVersion() == applied.GetResourceVersion():
		action = ssa.UnchangedAction
	}
	return &ssa.ChangeSetEntry{
		ObjMetadata:  object.UnstructuredToObjMetadata(o),
		GroupVersion: o.GroupVersionKind().Version,
		Subject:      id,
		Action:       action,
	}, nil
}

// recreate deletes o (background propagation) and waits until it is gone.
func (m *Manager) recreate(ctx context.Context, o *unstructured.Unstructured, timeout time.Duration) error {
	gone := metaOf(o)
	if err := m.client.Delete(ctx, gone, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete: %w", err)
	}
	err := wait.PollUntilContextTimeout(ctx, waitInterval, timeout, true, func(ctx context.Context) (bool, error) {
		err := m.client.Get(ctx, client.ObjectKeyFromObject(o), metaOf(o))
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("wait for the deletion: %w", err)
	}
	return nil
}

// lookup is what existed before an apply.
type lookup struct {
	// objs holds the metadata of the objects the cluster has, by identity.
	objs map[object.ObjMetadata]*metav1.PartialObjectMetadata
	// unserved are the kinds the API server did not serve (yet): a
	// CustomResourceDefinition in the plan defines them.
	unserved map[schema.GroupKind]bool
}

// existing looks up which of objs the cluster has. Objects of one kind and
// namespace are looked up with one metadata-only LIST; a kind with a
// single object, or one the client may not list (an impersonated service
// account may only get and patch), with one metadata-only GET per object.
func (m *Manager) existing(ctx context.Context, objs []*unstructured.Unstructured) (*lookup, error) {
	type bucket struct {
		gvk  schema.GroupVersionKind
		ns   string
		objs []*unstructured.Unstructured
	}
	type key struct {
		gk schema.GroupKind
		ns string
	}
	index := map[key]int{}
	var buckets []*bucket
	for _, o := range objs {
		k := key{o.GroupVersionKind().GroupKind(), o.GetNamespace()}
		i, ok := index[k]
		if !ok {
			i = len(buckets)
			index[k] = i
			buckets = append(buckets, &bucket{gvk: o.GroupVersionKind(), ns: o.GetNamespace()})
		}
		buckets[i].objs = append(buckets[i].objs, o)
	}
	var mu sync.Mutex
	out := &lookup{
		objs:     make(map[object.ObjMetadata]*metav1.PartialObjectMetadata, len(objs)),
		unserved: map[schema.GroupKind]bool{},
	}
	put := func(gk schema.GroupKind, pm *metav1.PartialObjectMetadata) {
		mu.Lock()
		out.objs[object.ObjMetadata{Namespace: pm.GetNamespace(), Name: pm.GetName(), GroupKind: gk}] = pm
		mu.Unlock()
	}
	unserved := func(gk schema.GroupKind) {
		mu.Lock()
		out.unserved[gk] = true
		mu.Unlock()
	}
	getEach := func(b *bucket) error {
		errs := parallel(ctx, len(b.objs), m.concurrency, func(i int) error {
			pm := metaOf(b.objs[i])
			err := m.client.Get(ctx, client.ObjectKeyFromObject(pm), pm)
			switch {
			case apierrors.IsNotFound(err):
				return nil
			case meta.IsNoMatchError(err):
				unserved(b.gvk.GroupKind())
				return nil
			case err != nil:
				return &ObjectError{Object: utils.FmtUnstructured(b.objs[i]), Err: fmt.Errorf("read before apply: %w", err)}
			}
			put(b.gvk.GroupKind(), pm)
			return nil
		})
		return join(compact(errs))
	}
	errs := parallel(ctx, len(buckets), m.concurrency, func(i int) error {
		b := buckets[i]
		if len(b.objs) == 1 {
			return getEach(b)
		}
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(b.gvk.GroupVersion().WithKind(b.gvk.Kind + "List"))
		var opts []client.ListOption
		if b.ns != "" {
			opts = append(opts, client.InNamespace(b.ns))
		}
		if err := m.client.List(ctx, list, opts...); err != nil {
			switch {
			case apierrors.IsForbidden(err) || apierrors.IsMethodNotSupported(err):
				return getEach(b)
			case meta.IsNoMatchError(err):
				unserved(b.gvk.GroupKind())
				return nil
			case apierrors.IsNotFound(err) && b.ns != "":
				return nil // no such namespace: nothing in it exists
			}
			return fmt.Errorf("list %s in %q before apply: %w", b.gvk.Kind, b.ns, err)
		}
		for j := range list.Items {
			put(b.gvk.GroupKind(), &list.Items[j])
		}
		return nil
	})
	return out, join(compact(errs))
}

// conflicts returns an *OwnershipConflictError for each of objs whose live
// version (in prev) carries owner labels that name another GitSync. An
// object without owner labels (made by hand) is no conflict: applying
// adopts it.
func conflicts(objs []*unstructured.Unstructured, prev *lookup, owner Owner) error {
	var errs []error
	for _, o := range objs {
		pm := prev.objs[object.UnstructuredToObjMetadata(o)]
		if pm == nil {
			continue
		}
		l := pm.GetLabels()
		other := Owner{Name: l[v1alpha1.NameLabel], Namespace: l[v1alpha1.NamespaceLabel]}
		if other.Name != "" && other != owner {
			errs = append(errs, &OwnershipConflictError{Object: utils.FmtUnstructured(o), Owner: other})
		}
	}
	return join(errs)
}

// metaOf is an empty metadata-only object with o's kind and identity.
func metaOf(o *unstructured.Unstructured) *metav1.PartialObjectMetadata {
	pm := &metav1.PartialObjectMetadata{}
	pm.SetGroupVersionKind(o.GroupVersionKind())
	pm.SetNamespace(o.GetNamespace())
	pm.SetName(o.GetName())
	return pm
}

// anyInMeta is utils.AnyInMetadata for metadata-only objects.
func anyInMeta(pm *metav1.PartialObjectMetadata, sel map[string]string) bool {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetLabels(pm.GetLabels())
	u.SetAnnotations(pm.GetAnnotations())
	return utils.AnyInMetadata(u, sel)
}

// parallel runs fn(0..n-1), at most limit at a time, and returns each
// call's error; a call not started before ctx ended gets ctx's error.
func parallel(ctx context.Context, n, limit int, fn func(i int) error) []error {
	errs := make([]error, n)
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			for j := i; j < n; j++ {
				errs[j] = ctx.Err()
			}
			wg.Wait()
			return errs
		}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	return errs
}

// compact drops the nil errors.
func compact(errs []error) []error {
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}
