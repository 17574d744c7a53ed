package sync

import (
	"context"
	gosync "sync"

	"k8s.io/apimachinery/pkg/types"
)

// runner runs at most one sync per GitSync at a time, "latest wins": asking
// for different work on a GitSync that is busy cancels the running sync and
// starts the new one as soon as the old one has stopped; asking for the
// same work again is a no-op. At most limit syncs run at once.
type runner struct {
	mu    gosync.Mutex
	jobs  map[types.NamespacedName]*job
	slots chan struct{}
	wg    gosync.WaitGroup
}

type job struct {
	want   want
	cancel context.CancelFunc
	done   chan struct{}
}

func newRunner(limit int) *runner {
	if limit < 1 {
		limit = 1
	}
	return &runner{jobs: map[types.NamespacedName]*job{}, slots: make(chan struct{}, limit)}
}

// start runs fn for key unless the same work is already running. It returns
// false when it did nothing. fn's context is cancelled when newer work for
// the same key arrives, on stop, or when parent is done.
func (r *runner) start(parent context.Context, key types.NamespacedName, w want, fn func(ctx context.Context)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := r.jobs[key]
	if prev != nil && prev.want == w {
		return false
	}
	if prev != nil {
		// Fix (found by TestRunnerSupersededWaitingWorkNeverRuns under
		// -race): cancel the superseded job here, not only in the goroutine
		// below, which may be scheduled after that job has already started.
		prev.cancel()
	}
	ctx, cancel := context.WithCancel(parent)
	j := &job{want: w, cancel: cancel, done: make(chan struct{})}
	r.jobs[key] = j
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(j.done)
		defer cancel()
		if prev != nil {
			prev.cancel()
			<-prev.done
		}
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			r.finish(key, j)
			return
		}
		defer func() { <-r.slots }()
		// Fix (found by TestRunnerSupersededWaitingWorkNeverRuns): when newer
		// work cancelled this job while it waited for prev, both cases of the
		// select above may be ready and Go picks one at random, so
		// superseded work sometimes ran (with a cancelled context). Check
		// again now that the slot is held.
		if ctx.Err() != nil {
			r.finish(key, j)
			return
		}
		fn(ctx)
		r.finish(key, j)
	}()
	return true
}

// finish forgets j unless newer work replaced it already.
func (r *runner) finish(key types.NamespacedName, j *job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.jobs[key] == j {
		delete(r.jobs, key)
	}
}

// busy reports whether a sync for key is running or waiting to run.
func (r *runner) busy(key types.NamespacedName) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.jobs[key] != nil
}

// cancel stops the work for key, if any, and waits until it has stopped.
func (r *runner) cancel(key types.NamespacedName) {
	r.mu.Lock()
	j := r.jobs[key]
	delete(r.jobs, key)
	r.mu.Unlock()
	if j != nil {
		j.cancel()
		<-j.done
	}
}

// wait blocks until every started sync has returned.
func (r *runner) wait() { r.wg.Wait() }
