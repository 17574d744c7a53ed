package sync

import (
	"context"
	"errors"
	gosync "sync"

	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/api/v1alpha1"
)

// errSuperseded is the cause of a reconcile's cancellation when newer work
// for the same GitSync arrived: it stops and the key is reconciled again.
var errSuperseded = errors.New("superseded by newer work")

// work is what a reconcile acts on: the spec generation and the resync
// value it read. A change of either is newer work.
type work struct {
	generation int64
	resync     string
}

func workOf(gs *v1alpha1.GitSync) work {
	return work{generation: gs.Generation, resync: resyncValue(gs)}
}

// inflight is the cancel registry behind "latest wins". controller-runtime
// never reconciles one key twice at once, so there is at most one entry
// per GitSync: the reconcile running for it, its work and its cancel.
// When newer work arrives for a GitSync that is mid-sync, its context is
// cancelled; the reconcile stops, and the work queue (which marked the key
// dirty) reconciles it again with the new work.
type inflight struct {
	mu      gosync.Mutex
	running map[types.NamespacedName]*reconcileRun
}

type reconcileRun struct {
	work   work
	cancel context.CancelCauseFunc
}

// begin registers the reconcile of key for w and returns its context and
// the function that unregisters it.
func (f *inflight) begin(ctx context.Context, key types.NamespacedName, w work) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	run := &reconcileRun{work: w, cancel: cancel}
	f.mu.Lock()
	if f.running == nil {
		f.running = map[types.NamespacedName]*reconcileRun{}
	}
	f.running[key] = run
	f.mu.Unlock()
	return ctx, func() {
		f.mu.Lock()
		if f.running[key] == run {
			delete(f.running, key)
		}
		f.mu.Unlock()
		cancel(nil)
	}
}

// supersede cancels the reconcile of key when it works on something other
// than w; it reports whether it cancelled one.
func (f *inflight) supersede(key types.NamespacedName, w work) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	run := f.running[key]
	if run == nil || run.work == w {
		return false
	}
	run.cancel(errSuperseded)
	return true
}

// cancel cancels the reconcile of key, whatever it works on ("sync now",
// a deleted GitSync).
func (f *inflight) cancel(key types.NamespacedName) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	run := f.running[key]
	if run == nil {
		return false
	}
	run.cancel(errSuperseded)
	return true
}

// superseded reports whether ctx was cancelled for newer work (or because
// the agent stops), as opposed to the sync timeout.
func superseded(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), errSuperseded) || errors.Is(ctx.Err(), context.Canceled)
}
