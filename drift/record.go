package drift

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/fluxcd/cli-utils/pkg/object"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// entry is the record of one applied object.
type entry struct {
	id  string // inventory ID, <namespace>_<name>_<group>_<kind>
	gvk schema.GroupVersionKind
	key objKey
	// applied is the object as sent to the API server, compact JSON: what
	// Check dry-runs again. sum fingerprints it.
	applied []byte
	sum     [sha256.Size]byte
	// rv is the resourceVersion the apply produced, the one a Check found
	// without drift, or a later one the watch showed differs in status
	// only; "" when unknown (every version is then newer).
	rv string
	// sig is the signature (see signature) of the object at the version
	// the apply produced or a Check accepted; "" until the watch cache or
	// a Check has seen that version. A later version with the same
	// signature changed status only.
	sig string
	// changedAt is when a watch event first showed the object past rv or
	// gone; zero while it matches.
	changedAt time.Time
	// checked caches the last Check of this object: drift found at
	// resourceVersion checkedRV, so a Check of the same version needs no
	// request.
	checkedRV string
	checked   *Object
	// checkedSig is the signature at checkedRV: a later version with the
	// same one changed status only, and the cached answer still holds.
	checkedSig string
}

// Record remembers what was applied for owner: each object exactly as sent
// (applied, e.g. apply.Plan.Objects) and the resourceVersion it ended with
// (liveRV by inventory ID, e.g. apply.Result.Live). It replaces the
// owner's previous record: objects no longer applied stop being tracked,
// and an object whose content and version did not change keeps its state.
// An object without a version in liveRV is tracked with an unknown
// version, so it is a suspect until a Check accepts its live state. An
// applied HorizontalPodAutoscaler whose target is applied too makes the
// target's replicas ignored (see Scaled).
//
// Objects apply skipped as unchanged (see Unchanged) have no version in
// liveRV; as their content did not change either, they keep their state.
//
// Record starts a watch for each kind not yet watched and waits for its
// first list (one LIST request per new kind); with every kind watched it
// makes no request. It also ends a Hold on owner. It waits for Start.
// Record, Update and Forget of one owner must not run concurrently (the
// sync loop runs one reconcile per GitSync at a time).
func (t *Tracker) Record(ctx context.Context, owner Owner, applied []*unstructured.Unstructured, liveRV map[string]string) error {
	return t.record(ctx, owner, applied, liveRV, false)
}

// Update records objects re-applied for owner outside a full sync: drift
// correction re-applies only the drifted objects (see Applied), and
// Update records those, each as sent with the resourceVersion it ended
// with (liveRV by inventory ID), keeping the rest of owner's record as
// it is. It costs nothing per object not in applied, where Record of the
// whole set fingerprints every object again: with thousands of objects
// that is most of the time from an out-of-band change to its correction.
// Objects not recorded before are added. It ends a Hold on owner, and
// needs a Record of owner first. An applied HorizontalPodAutoscaler can
// change what is scaled (see Scaled): then Update records the whole set
// again, as Record does.
func (t *Tracker) Update(ctx context.Context, owner Owner, applied []*unstructured.Unstructured, liveRV map[string]string) error {
	if !t.Tracking(owner) {
		return fmt.Errorf("update %s: nothing recorded yet", owner)
	}
	if !slices.ContainsFunc(applied, isAutoscaler) {
		return t.record(ctx, owner, applied, liveRV, true)
	}
	all, err := t.Applied(owner, nil)
	if err != nil {
		return fmt.Errorf("update %s: %w", owner, err)
	}
	byID := make(map[string]int, len(all))
	for i, o := range all {
		byID[object.UnstructuredToObjMetadata(o).String()] = i
	}
	for _, o := range applied {
		if i, ok := byID[object.UnstructuredToObjMetadata(o).String()]; ok {
			all[i] = o
		} else {
			all = append(all, o)
		}
	}
	return t.record(ctx, owner, all, liveRV, false)
}

// record is Record, or with partial Update: then entries not in applied
// stay as they are.
func (t *Tracker) record(ctx context.Context, owner Owner, applied []*unstructured.Unstructured, liveRV map[string]string, partial bool) error {
	select {
	case <-t.started:
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNotStarted, context.Cause(ctx))
	}
	entries := make(map[objKey]*entry, len(applied))
	for _, o := range applied {
		e, err := t.newEntry(o)
		if err != nil {
			return fmt.Errorf("record %s: %w", owner, err)
		}
		e.rv = liveRV[e.id]
		entries[e.key] = e
	}
	added := gvrsOf(entries)
	if err := t.ensureWatches(ctx, added); err != nil {
		return fmt.Errorf("record %s: %w", owner, err)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.ownerLocked(owner)
	scaled := st.scaled
	if !partial {
		scaled = scaledIn(applied)
	}
	// An old entry's accepted version was judged under the old autoscalers:
	// keep it only while they are the same.
	sameScaled := slices.Equal(st.scaled, scaled)
	for k, e := range entries {
		if old, ok := st.entries[k]; ok && sameScaled && old.sum == e.sum && (old.rv == e.rv || e.rv == "") {
			entries[k] = old
		}
	}
	for _, e := range entries {
		if e.sig == "" {
			t.baselineLocked(e)
		}
	}
	if partial {
		merged := maps.Clone(st.entries)
		maps.Copy(merged, entries)
		entries = merged
	}
	// Each owner holds one reference per resource of its record: drop the
	// ones ensureWatches took twice, and those of resources it left.
	kept := gvrsOf(entries)
	release := map[schema.GroupVersionResource]bool{}
	for gvr := range gvrsOf(st.entries) {
		if added[gvr] || !kept[gvr] {
			release[gvr] = true
		}
	}
	t.releaseWatchesLocked(release)
	st.entries = entries
	st.scaled = scaled
	st.recorded = true
	st.held, st.changedWhileHeld = false, false
	if len(t.suspectsLocked(st, time.Now())) > 0 {
		t.queueLocked(owner)
	}
	return nil
}

// baselineLocked takes e's signature from the watch cache when the cache
// holds exactly the recorded version: the watch may have delivered the
// apply's echo before Record. Otherwise observe takes it when the echo
// arrives.
func (t *Tracker) baselineLocked(e *entry) {
	w, ok := t.watches[e.key.gvr]
	if !ok || e.rv == "" {
		return
	}
	obj, exists, err := w.informer.GetStore().GetByKey(e.key.storeKey())
	if err != nil || !exists {
		return
	}
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok && m.ResourceVersion == e.rv {
		e.sig = cachedSignature(m)
	}
}

// newEntry resolves o's resource and fingerprints it.
func (t *Tracker) newEntry(o *unstructured.Unstructured) (*entry, error) {
	if o == nil {
		return nil, errors.New("nil object")
	}
	gvk := o.GroupVersionKind()
	mapping, err := t.mapping(gvk)
	if err != nil {
		return nil, err
	}
	ns := o.GetNamespace()
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		ns = ""
	}
	data, sum, err := fingerprint(o)
	if err != nil {
		return nil, err
	}
	return &entry{
		id:      object.UnstructuredToObjMetadata(o).String(),
		gvk:     gvk,
		key:     objKey{gvr: mapping.Resource, namespace: ns, name: o.GetName()},
		applied: data,
		sum:     sum,
	}, nil
}

// fingerprint returns o as compact JSON (map keys sorted, so the same
// object always gives the same bytes) and its digest.
func fingerprint(o *unstructured.Unstructured) ([]byte, [sha256.Size]byte, error) {
	data, err := json.Marshal(o.Object)
	if err != nil {
		return nil, [sha256.Size]byte{}, fmt.Errorf("%s: %w", object.UnstructuredToObjMetadata(o), err)
	}
	return data, sha256.Sum256(data), nil
}

// mapping resolves gvk once; later calls are answered from memory so that
// Record of known kinds needs no discovery.
func (t *Tracker) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	t.mu.Lock()
	m, ok := t.mappings[gvk]
	t.mu.Unlock()
	if ok {
		return m, nil
	}
	m, err := t.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("resolve kind %s: %w", gvk, err)
	}
	t.mu.Lock()
	t.mappings[gvk] = m
	t.mu.Unlock()
	return m, nil
}
