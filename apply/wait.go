package apply

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

// DefaultWaitInterval is how often Wait looks at objects not yet Current.
const DefaultWaitInterval = 2 * time.Second

// ObjectHealth is the kstatus verdict on one object.
type ObjectHealth struct {
	// Object is Kind/namespace/name.
	Object string
	// Status is kstatus' word: InProgress, Failed, Terminating, NotFound...
	Status string
	// Message says why, as kstatus computes it from the object's
	// conditions and status (e.g. "Available: 0/2").
	Message string
}

// HealthError lists the objects that did not become Current.
type HealthError struct {
	// TimedOut is true when the wait ran out of time, false when an object
	// Failed (the wait stops at the first failure).
	TimedOut bool
	After    time.Duration
	Objects  []ObjectHealth
}

func (e *HealthError) Error() string {
	parts := make([]string, 0, len(e.Objects))
	for i, o := range e.Objects {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(e.Objects)-5))
			break
		}
		s := o.Object + " " + o.Status
		if o.Message != "" {
			s += ": " + o.Message
		}
		parts = append(parts, s)
	}
	what := "not healthy"
	if e.TimedOut {
		what = fmt.Sprintf("not ready after %s", e.After.Round(time.Second))
	}
	return fmt.Sprintf("%d object(s) %s: %s", len(e.Objects), what, strings.Join(parts, "; "))
}

// Wait polls the objects of inv until every one is Current by kstatus,
// one of them Failed, or ctx ends (its deadline is the health timeout).
// Objects already Current are not read again. A cancelled ctx returns
// ctx's error, so a newer revision can cut a wait short.
func (m *Manager) Wait(ctx context.Context, inv *v1alpha1.ResourceInventory, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultWaitInterval
	}
	objs, err := Objects(inv)
	if err != nil {
		return err
	}
	start := time.Now()
	pending := objs
	var last []ObjectHealth
	// Fix: when the deadline passed in the middle of a round, the objects
	// not read again in it were left out of the timeout error (with a
	// single object: "0 object(s) not ready"). Their verdict of the
	// previous round is kept for the report.
	seen := map[*unstructured.Unstructured]ObjectHealth{}
	for {
		var next []*unstructured.Unstructured
		last = last[:0]
		for i, o := range pending {
			h, err := m.health(ctx, o)
			if err != nil {
				if ctx.Err() != nil {
					for _, rest := range pending[i:] {
						next = append(next, rest)
						if prev, ok := seen[rest]; ok {
							last = append(last, prev)
						} else {
							last = append(last, ObjectHealth{Object: objectID(rest), Status: string(status.UnknownStatus), Message: "not checked before the deadline"})
						}
					}
					break
				}
				return err
			}
			seen[o] = h
			if h.Status == string(status.CurrentStatus) {
				continue
			}
			if h.Status == string(status.FailedStatus) {
				return &HealthError{After: time.Since(start), Objects: []ObjectHealth{h}}
			}
			next = append(next, o)
			last = append(last, h)
		}
		if ctx.Err() == nil && len(next) == 0 {
			return nil
		}
		pending = next
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				sort.Slice(last, func(i, j int) bool { return last[i].Object < last[j].Object })
				return &HealthError{TimedOut: true, After: time.Since(start), Objects: append([]ObjectHealth(nil), last...)}
			}
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// health reads one object and computes its kstatus.
func (m *Manager) health(ctx context.Context, o *unstructured.Unstructured) (ObjectHealth, error) {
	id := objectID(o)
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(o.GroupVersionKind())
	if err := m.client.Get(ctx, client.ObjectKeyFromObject(o), live); err != nil {
		if apierrors.IsNotFound(err) {
			return ObjectHealth{Object: id, Status: string(status.NotFoundStatus), Message: "the object does not exist"}, nil
		}
		return ObjectHealth{}, fmt.Errorf("%s health check: %w", id, err)
	}
	res, err := status.Compute(live)
	if err != nil {
		return ObjectHealth{}, fmt.Errorf("%s health check: %w", id, err)
	}
	return ObjectHealth{Object: id, Status: string(res.Status), Message: res.Message}, nil
}

// objectID is Kind/namespace/name, or Kind/name when cluster-scoped.
func objectID(o *unstructured.Unstructured) string {
	if o.GetNamespace() != "" {
		return o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
	}
	return o.GetKind() + "/" + o.GetName()
}
