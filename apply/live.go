package apply

import (
	"sync"

	"github.com/fluxcd/cli-utils/pkg/object"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Apply records, per call, the resourceVersion in every server-side apply
// response: for an object the apply left unchanged it is the live one. The
// drift watch cache compares against these.

// liveKey is the context key of the *liveVersions of one Apply call.
type liveKey struct{}

// liveVersions collects resourceVersions by inventory ID.
type liveVersions struct {
	mu  sync.Mutex
	rvs map[string]string
}

func (l *liveVersions) set(obj client.Object) {
	id := object.ObjMetadata{
		Namespace: obj.GetNamespace(),
		Name:      obj.GetName(),
		GroupKind: obj.GetObjectKind().GroupVersionKind().GroupKind(),
	}.String()
	l.mu.Lock()
	l.rvs[id] = obj.GetResourceVersion()
	l.mu.Unlock()
}

func (l *liveVersions) snapshot() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]string, len(l.rvs))
	for id, rv := range l.rvs {
		if rv != "" {
			out[id] = rv
		}
	}
	return out
}
