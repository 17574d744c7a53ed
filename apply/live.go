package apply

import (
	"context"
	"sync"

	"github.com/fluxcd/cli-utils/pkg/object"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The ssa manager does not hand back the objects the API server returned,
// so Apply cannot read the resourceVersion each object ended with from it.
// liveClient sits between ssa and the API server and notes, per Apply call,
// the resourceVersion in every server-side apply response. For an object
// ssa left unchanged the last response is its dry-run, whose
// resourceVersion is the live one; for an applied object it is the apply
// that follows the dry-run. The drift watch cache compares against these.

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

// liveClient is the client given to ssa: every call goes to Client, and a
// successful server-side apply patch records the response's
// resourceVersion in the context's liveVersions, if any.
type liveClient struct{ client.Client }

func (c liveClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	err := c.Client.Patch(ctx, obj, patch, opts...)
	if err == nil && patch.Type() == types.ApplyPatchType {
		if l, ok := ctx.Value(liveKey{}).(*liveVersions); ok {
			l.set(obj)
		}
	}
	return err
}
