package drift

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"tether.dev/tether/api/v1alpha1"
)

// ownerSelector selects every object Tether applied, whichever GitSync
// owns it: one watch per kind serves all owners.
const ownerSelector = v1alpha1.NameLabel + "," + v1alpha1.NamespaceLabel

// watch is one metadata-only informer for a resource, shared by owners.
type watch struct {
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
	refs     int // owners with entries of this resource
	// seen is the newest resourceVersion observe has handled. The
	// informer updates its store before it calls observe, so only this
	// says that the tracker has reacted to a version (tests wait for it
	// instead of sleeping).
	seen string
}

func (w *watch) stop() { w.cancel() }

// objKey identifies a watched object: its resource and its store key.
type objKey struct {
	gvr       schema.GroupVersionResource
	namespace string
	name      string
}

// storeKey is the informer's key of the object (namespace/name).
func (k objKey) storeKey() string {
	if k.namespace == "" {
		return k.name
	}
	return k.namespace + "/" + k.name
}

// slim keeps what drift reads from a watched object and drops the rest
// (managedFields, labels, annotations, owner references, finalizers), so
// the cache of thousands of objects costs a few hundred bytes each. What
// it keeps of managedFields, labels and annotations is their signature,
// and of the labels the owner they name, both in one string (see
// slimMark): maps for them cost more than all the rest of the copy.
func slim(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil // tombstones and the like pass through
	}
	if strings.HasPrefix(m.GenerateName, slimMark) {
		return m, nil
	}
	l := m.Labels
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		ResourceVersion:   m.ResourceVersion,
		DeletionTimestamp: m.DeletionTimestamp,
		GenerateName:      slimMark + signature(m) + " " + l[v1alpha1.NamespaceLabel] + " " + l[v1alpha1.NameLabel],
	}}, nil
}

// slimmed returns what slim kept of m: its signature and owner.
func slimmed(m *metav1.PartialObjectMetadata) (sig string, owner Owner) {
	rest, ok := strings.CutPrefix(m.GenerateName, slimMark)
	if !ok {
		return "", Owner{}
	}
	parts := strings.SplitN(rest, " ", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return parts[0], Owner{Namespace: parts[1], Name: parts[2]}
}

// ensureWatches starts a watch for every resource in gvrs that has none
// and takes a reference on each for one owner; on error it takes none. It
// waits for new informers' first list without holding the lock.
func (t *Tracker) ensureWatches(ctx context.Context, gvrs map[schema.GroupVersionResource]bool) error {
	t.mu.Lock()
	if t.ctx == nil || t.ctx.Err() != nil {
		t.mu.Unlock()
		return ErrNotStarted
	}
	var unsynced []cache.InformerSynced
	taken := make(map[schema.GroupVersionResource]bool, len(gvrs))
	for gvr := range gvrs {
		w, ok := t.watches[gvr]
		if !ok {
			var err error
			if w, err = t.startWatchLocked(gvr); err != nil {
				t.releaseWatchesLocked(taken)
				t.mu.Unlock()
				return err
			}
			t.watches[gvr] = w
		}
		w.refs++
		taken[gvr] = true
		if !w.informer.HasSynced() {
			unsynced = append(unsynced, w.informer.HasSynced)
		}
	}
	t.mu.Unlock()
	if len(unsynced) > 0 && !cache.WaitForCacheSync(ctx.Done(), unsynced...) {
		t.mu.Lock()
		t.releaseWatchesLocked(taken)
		t.mu.Unlock()
		return fmt.Errorf("drift: wait for watch cache: %w", context.Cause(ctx))
	}
	return nil
}

func (t *Tracker) startWatchLocked(gvr schema.GroupVersionResource) (*watch, error) {
	inf := metadatainformer.NewFilteredMetadataInformer(t.meta, gvr, metav1.NamespaceAll, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = ownerSelector }).Informer()
	if err := inf.SetTransform(slim); err != nil {
		return nil, fmt.Errorf("drift: watch %s: %w", gvr, err)
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.observe(gvr, obj, false) },
		UpdateFunc: func(_, obj any) { t.observe(gvr, obj, false) },
		DeleteFunc: func(obj any) { t.observe(gvr, obj, true) },
	})
	if err != nil {
		return nil, fmt.Errorf("drift: watch %s: %w", gvr, err)
	}
	ctx, cancel := context.WithCancel(t.ctx)
	go inf.RunWithContext(ctx)
	t.log.Info("watch started", "resource", gvr.String())
	return &watch{informer: inf, cancel: cancel}, nil
}

// releaseWatchesLocked drops one owner's reference on each resource and
// stops watches nobody needs.
func (t *Tracker) releaseWatchesLocked(gvrs map[schema.GroupVersionResource]bool) {
	for gvr := range gvrs {
		w, ok := t.watches[gvr]
		if !ok {
			continue
		}
		if w.refs--; w.refs <= 0 {
			w.stop()
			delete(t.watches, gvr)
			t.log.Info("watch stopped", "resource", gvr.String())
		}
	}
}

func gvrsOf(entries map[objKey]*entry) map[schema.GroupVersionResource]bool {
	out := make(map[schema.GroupVersionResource]bool)
	for k := range entries {
		out[k.gvr] = true
	}
	return out
}

// observe handles one watch event: when it makes a recorded object differ
// from its record, it notes when and queues a notification for the owner.
func (t *Tracker) observe(gvr schema.GroupVersionResource, obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, deleted = d.Obj, true
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	_, owner := slimmed(m)
	t.mu.Lock()
	defer t.mu.Unlock()
	if w, ok := t.watches[gvr]; ok && newer(m.ResourceVersion, w.seen) {
		w.seen = m.ResourceVersion
	}
	st, ok := t.owners[owner]
	if !ok {
		return
	}
	e, ok := st.entries[objKey{gvr: gvr, namespace: m.Namespace, name: m.Name}]
	if !ok {
		return
	}
	if !deleted {
		switch {
		case m.ResourceVersion == e.rv:
			// The version recorded: its signature is the baseline that
			// later versions are compared with.
			if e.sig == "" {
				e.sig = cachedSignature(m)
			}
			return
		case !newer(m.ResourceVersion, e.rv):
			return
		case e.harmless(m):
			// Status-only: seen and harmless. The recorded version moves
			// on; the baseline stays, so the next real change still shows.
			e.rv, e.changedAt = m.ResourceVersion, time.Time{}
			return
		case e.checked != nil && e.checkedSig != "" && cachedSignature(m) == e.checkedSig:
			// Drift already checked and reported; status-only since.
			return
		}
	}
	if e.changedAt.IsZero() {
		e.changedAt = time.Now()
	}
	if st.held {
		st.changedWhileHeld = true
		return
	}
	t.queueLocked(owner)
}
