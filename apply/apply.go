package apply

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/utils"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"tether.dev/tether/api/v1alpha1"
)

// waitInterval is how often Apply polls CRDs and Namespaces it waits for.
const waitInterval = 250 * time.Millisecond

// Result is what Apply did.
type Result struct {
	// ChangeSet has one entry per applied object: created, configured,
	// unchanged or skipped.
	ChangeSet *ssa.ChangeSet
	// Inventory records every object of the plan.
	Inventory *v1alpha1.ResourceInventory
	// Namespaces counts the plan's objects per namespace ("" for cluster
	// scope), sorted by namespace.
	Namespaces []v1alpha1.NamespaceCount
	// Changed is true when any object was created or configured.
	Changed bool
	// Live holds, by inventory ID (EntryID), the resourceVersion each
	// applied or unchanged object has in the cluster after Apply: what a
	// watch cache sees as the echo of this apply. Skipped objects, and
	// those Options.Skip accepted (not sent), are absent. Only complete
	// when Apply returns no error: after a failure it lacks the objects
	// not applied.
	Live map[string]string
}

// Apply applies plan with server-side apply, in stages:
//
//  1. cluster definitions (CRDs, Namespaces, ClusterRoles), then class
//     definitions (StorageClass, IngressClass, ...), each followed by a
//     wait until they are ready (CRDs Established), bounded by
//     Options.Timeout;
//  2. everything else, grouped per namespace with the cluster-scoped
//     objects as one more group; groups run concurrently (bounded by
//     ManagerOptions.Concurrency), and a failing group does not stop the
//     others;
//  3. webhook configurations, last, so that they cannot block the objects
//     that serve them.
//
// Objects Options.Skip accepts are reported unchanged and not sent.
// Before anything is applied, one metadata-only LIST per kind and
// namespace tells what exists; when a live object's owner labels name
// another GitSync, Apply refuses the whole set with an
// *OwnershipConflictError per such object and applies nothing (an object
// without owner labels is adopted). Then every object gets one
// server-side apply (no dry-run), up to ManagerOptions.ObjectConcurrency
// at once, and a failing object does not stop the others. An object
// absent before is created, one whose resourceVersion the apply kept is
// unchanged, any other is configured.
//
// An object annotated tether.dev/force: enabled is deleted and recreated
// when an immutable field changed; without it the error names the field.
// On error the Result still holds the change set of what was applied.
func (m *Manager) Apply(ctx context.Context, plan *Plan) (*Result, error) {
	if plan == nil {
		return nil, errors.New("apply: nil plan")
	}
	res := &Result{
		ChangeSet:  ssa.NewChangeSet(),
		Inventory:  plan.Inventory(),
		Namespaces: NamespaceCounts(plan.Objects),
	}
	live := &liveVersions{rvs: make(map[string]string, len(plan.Objects))}
	ctx = context.WithValue(ctx, liveKey{}, live)
	defer func() { res.Live = live.snapshot() }()
	timeout := plan.Options.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	send := res.skip(plan.Objects, plan.Options.Skip)
	// Every lookup before any apply: an object another GitSync owns
	// refuses the whole set, so that nothing of it is half applied.
	prev, err := m.existing(ctx, send)
	if err != nil {
		return res, err
	}
	if err := conflicts(send, prev, plan.Options.Owner); err != nil {
		return res, err
	}
	s := splitStages(send)
	for _, defs := range [][]*unstructured.Unstructured{s.definitions, s.classes} {
		if len(defs) == 0 {
			continue
		}
		cs, err := m.applySet(ctx, defs, prev, timeout)
		res.add(cs)
		if err != nil {
			return res, err
		}
		wait := ssa.WaitOptions{Interval: waitInterval, Timeout: timeout}
		if err := m.rm.WaitForSetWithContext(ctx, cs.ToObjMetadataSet(), wait); err != nil {
			return res, fmt.Errorf("wait for cluster definitions: %w", err)
		}
	}
	cs, err := m.applyGroups(ctx, groupByNamespace(s.rest), prev, timeout)
	res.add(cs)
	if err != nil {
		return res, err
	}
	if len(s.last) > 0 {
		cs, err := m.applySet(ctx, s.last, prev, timeout)
		res.add(cs)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// skip reports the objects skip accepts as unchanged, without a request,
// and returns the others.
func (r *Result) skip(objs []*unstructured.Unstructured, skip func(*unstructured.Unstructured) bool) []*unstructured.Unstructured {
	if skip == nil {
		return objs
	}
	send := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		if !skip(o) {
			send = append(send, o)
			continue
		}
		r.ChangeSet.Add(ssa.ChangeSetEntry{
			ObjMetadata:  object.UnstructuredToObjMetadata(o),
			GroupVersion: o.GroupVersionKind().Version,
			Subject:      utils.FmtUnstructured(o),
			Action:       ssa.UnchangedAction,
		})
	}
	return send
}

func (r *Result) add(cs *ssa.ChangeSet) {
	if cs == nil {
		return
	}
	r.ChangeSet.Append(cs.Entries)
	for _, e := range cs.Entries {
		if e.Action == ssa.CreatedAction || e.Action == ssa.ConfiguredAction {
			r.Changed = true
		}
	}
}

// applyGroups applies each group concurrently, at most m.concurrency at a
// time, and merges their change sets in group order.
func (m *Manager) applyGroups(ctx context.Context, groups [][]*unstructured.Unstructured, prev *lookup, timeout time.Duration) (*ssa.ChangeSet, error) {
	sets := make([]*ssa.ChangeSet, len(groups))
	errs := parallel(ctx, len(groups), m.concurrency, func(i int) error {
		var err error
		sets[i], err = m.applySet(ctx, groups[i], prev, timeout)
		return err
	})
	out := ssa.NewChangeSet()
	for _, cs := range sets {
		if cs != nil {
			out.Append(cs.Entries)
		}
	}
	return out, join(compact(errs))
}

// stages holds a plan's objects split by apply stage.
type stages struct {
	definitions, classes, rest, last []*unstructured.Unstructured
}

func splitStages(objs []*unstructured.Unstructured) stages {
	last := make(map[string]bool, len(ssa.ReconcileOrder.Last))
	for _, k := range ssa.ReconcileOrder.Last {
		last[k] = true
	}
	var s stages
	for _, o := range objs {
		switch {
		case utils.IsClusterDefinition(o):
			s.definitions = append(s.definitions, o)
		case utils.IsClassDefinition(o):
			s.classes = append(s.classes, o)
		case last[o.GetKind()]:
			s.last = append(s.last, o)
		default:
			s.rest = append(s.rest, o)
		}
	}
	return s
}

// groupByNamespace splits objs per namespace, the cluster-scoped ones ("")
// first, then namespaces in order; each group keeps objs' order.
func groupByNamespace(objs []*unstructured.Unstructured) [][]*unstructured.Unstructured {
	byNS := make(map[string][]*unstructured.Unstructured)
	for _, o := range objs {
		byNS[o.GetNamespace()] = append(byNS[o.GetNamespace()], o)
	}
	names := slices.Sorted(maps.Keys(byNS))
	groups := make([][]*unstructured.Unstructured, 0, len(names))
	for _, ns := range names {
		groups = append(groups, byNS[ns])
	}
	return groups
}
