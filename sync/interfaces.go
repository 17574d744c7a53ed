package sync

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/apply"
	"tether.dev/tether/drift"
	"tether.dev/tether/render"
	"tether.dev/tether/source"
)

// Source resolves refs to revisions and checks revisions out. Forget drops
// what it remembers of url's refs, so that the next Resolve lists them.
type Source interface {
	Resolve(ctx context.Context, url string, ref source.Ref, auth *source.Auth) (source.Revision, error)
	Checkout(ctx context.Context, url string, rev source.Revision, auth *source.Auth) (string, error)
	Forget(url string)
}

// Renderer turns a checked-out folder into objects.
type Renderer interface {
	Render(ctx context.Context, opts render.Options) (*render.Result, error)
}

// RenderFunc adapts a function such as render.Render to Renderer.
type RenderFunc func(ctx context.Context, opts render.Options) (*render.Result, error)

// Render calls f.
func (f RenderFunc) Render(ctx context.Context, opts render.Options) (*render.Result, error) {
	return f(ctx, opts)
}

// Planner validates a set of objects for apply: the plan stage, all that
// `tether diff` needs of an applier.
type Planner interface {
	Plan(ctx context.Context, objs []*unstructured.Unstructured, opts apply.Options) (*apply.Plan, error)
}

// Applier validates, applies and prunes objects in the cluster.
type Applier interface {
	Planner
	Apply(ctx context.Context, plan *apply.Plan) (*apply.Result, error)
	Prune(ctx context.Context, old, new *v1alpha1.ResourceInventory, owner apply.Owner) (*apply.PruneResult, error)
	Wait(ctx context.Context, inv *v1alpha1.ResourceInventory, interval time.Duration) error
}

// DriftTracker is what sync needs from drift.Tracker: the watch cache that
// says, without API requests, whether anything a GitSync applied changed.
type DriftTracker interface {
	Tracking(owner drift.Owner) bool
	Suspects(owner drift.Owner) []drift.Suspect
	Check(ctx context.Context, owner drift.Owner, ignore []drift.IgnoreRule) (*drift.Report, error)
	Hold(owner drift.Owner) (release func())
	Record(ctx context.Context, owner drift.Owner, applied []*unstructured.Unstructured, liveRV map[string]string) error
	// Update records a drift correction: only the re-applied objects.
	Update(ctx context.Context, owner drift.Owner, applied []*unstructured.Unstructured, liveRV map[string]string) error
	// Unchanged tells apply which planned objects are exactly as the last
	// apply left them, so that a forced resync sends nothing for them.
	Unchanged(owner drift.Owner) func(obj *unstructured.Unstructured) bool
	Applied(owner drift.Owner, ids []string) ([]*unstructured.Unstructured, error)
	Forget(owner drift.Owner)
	// Scaled lists the applied objects whose replicas an applied autoscaler
	// owns, which drift ignores by itself.
	Scaled(owner drift.Owner) []drift.Scaled
}
