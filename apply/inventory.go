package apply

import (
	"fmt"
	"sort"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"tether.dev/tether/api/v1alpha1"
)

// The inventory functions are pure: the safety of prune rests on a diff that
// a table test can check without a cluster.

// EntryID returns the inventory ID of obj in Flux's format,
// <namespace>_<name>_<group>_<kind> (a colon in an RBAC name becomes "__").
func EntryID(obj *unstructured.Unstructured) string {
	return object.UnstructuredToObjMetadata(obj).String()
}

// NewInventory records objs, one entry per object, sorted by ID. Version is
// the object's apiVersion (e.g. "apps/v1"). A repeated object is recorded
// once.
func NewInventory(objs []*unstructured.Unstructured) *v1alpha1.ResourceInventory {
	inv := &v1alpha1.ResourceInventory{Entries: make([]v1alpha1.ResourceRef, 0, len(objs))}
	seen := make(map[string]bool, len(objs))
	for _, o := range objs {
		id := EntryID(o)
		if seen[id] {
			continue
		}
		seen[id] = true
		inv.Entries = append(inv.Entries, v1alpha1.ResourceRef{ID: id, Version: o.GetAPIVersion()})
	}
	sort.Slice(inv.Entries, func(i, j int) bool { return inv.Entries[i].ID < inv.Entries[j].ID })
	return inv
}

// ParseEntry returns an object that carries only the identity of ref:
// apiVersion, kind, namespace and name. It accepts Version both as an
// apiVersion ("apps/v1") and, as Flux writes it, as the bare version ("v1").
func ParseEntry(ref v1alpha1.ResourceRef) (*unstructured.Unstructured, error) {
	meta, err := object.ParseObjMetadata(ref.ID)
	if err != nil {
		return nil, fmt.Errorf("inventory entry %q: %w", ref.ID, err)
	}
	if meta.Name == "" || meta.GroupKind.Kind == "" {
		return nil, fmt.Errorf("inventory entry %q: no name or kind", ref.ID)
	}
	version := ref.Version
	if i := strings.LastIndex(version, "/"); i >= 0 {
		version = version[i+1:]
	}
	if version == "" {
		return nil, fmt.Errorf("inventory entry %q: no version", ref.ID)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(schema.GroupVersionKind{Group: meta.GroupKind.Group, Version: version, Kind: meta.GroupKind.Kind})
	u.SetNamespace(meta.Namespace)
	u.SetName(meta.Name)
	return u, nil
}

// Objects returns the identity of every object in inv (see ParseEntry), in
// the inventory's order. A nil inventory holds nothing.
func Objects(inv *v1alpha1.ResourceInventory) ([]*unstructured.Unstructured, error) {
	if inv == nil {
		return nil, nil
	}
	objs := make([]*unstructured.Unstructured, 0, len(inv.Entries))
	for _, e := range inv.Entries {
		u, err := ParseEntry(e)
		if err != nil {
			return nil, err
		}
		objs = append(objs, u)
	}
	return objs, nil
}

// Diff returns the objects in old that are not in new, in prune order
// (namespaced objects, then cluster-scoped ones, then Namespaces, CRDs
// last). Objects are the same when namespace, name, group and kind are: a
// new API version of an object does not make it leave.
func Diff(old, new *v1alpha1.ResourceInventory) ([]*unstructured.Unstructured, error) {
	oldObjs, err := Objects(old)
	if err != nil {
		return nil, fmt.Errorf("old inventory: %w", err)
	}
	newObjs, err := Objects(new)
	if err != nil {
		return nil, fmt.Errorf("new inventory: %w", err)
	}
	keep := make(map[object.ObjMetadata]bool, len(newObjs))
	for _, o := range newObjs {
		keep[object.UnstructuredToObjMetadata(o)] = true
	}
	var gone []*unstructured.Unstructured
	seen := make(map[object.ObjMetadata]bool)
	for _, o := range oldObjs {
		id := object.UnstructuredToObjMetadata(o)
		if keep[id] || seen[id] {
			continue
		}
		seen[id] = true
		gone = append(gone, o)
	}
	sortForPrune(gone)
	return gone, nil
}

// NamespaceCounts counts objs per namespace ("" for cluster scope), sorted
// by namespace.
func NamespaceCounts(objs []*unstructured.Unstructured) []v1alpha1.NamespaceCount {
	counts := make(map[string]int)
	for _, o := range objs {
		counts[o.GetNamespace()]++
	}
	out := make([]v1alpha1.NamespaceCount, 0, len(counts))
	for ns, n := range counts {
		out = append(out, v1alpha1.NamespaceCount{Namespace: ns, Objects: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace < out[j].Namespace })
	return out
}

// AddChangeSet returns inv plus every object cs created, configured or
// found unchanged, so that objects written by a sync that then failed are
// still owned, and pruned once they leave Git. inv is not modified.
func AddChangeSet(inv *v1alpha1.ResourceInventory, cs *ssa.ChangeSet) *v1alpha1.ResourceInventory {
	out := &v1alpha1.ResourceInventory{}
	seen := map[string]bool{}
	if inv != nil {
		for _, e := range inv.Entries {
			seen[e.ID] = true
			out.Entries = append(out.Entries, e)
		}
	}
	if cs != nil {
		for _, e := range cs.Entries {
			switch e.Action {
			case ssa.CreatedAction, ssa.ConfiguredAction, ssa.UnchangedAction:
			default:
				continue
			}
			id := e.ObjMetadata.String()
			if seen[id] {
				continue
			}
			seen[id] = true
			out.Entries = append(out.Entries, v1alpha1.ResourceRef{ID: id, Version: e.GroupVersion})
		}
	}
	sort.Slice(out.Entries, func(i, j int) bool { return out.Entries[i].ID < out.Entries[j].ID })
	return out
}
