package drift

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

var deploymentsGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}

// writeStatus updates the status subresource of Deployment web n times as
// its controller would, under field manager "controller", and returns the
// last resourceVersion.
func writeStatus(tb testing.TB, ns string, n int) string {
	tb.Helper()
	ctx := testContext(tb)
	d := &appsv1.Deployment{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, d); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		d.Status.ObservedGeneration = d.Generation
		d.Status.Replicas = d.Status.Replicas%5 + 1 // differs every time
		d.Status.UpdatedReplicas = d.Status.Replicas
		if err := k8s.Status().Update(ctx, d, client.FieldOwner("controller")); err != nil {
			tb.Fatalf("status update %d: %v", i, err)
		}
	}
	return d.ResourceVersion
}

// waitCached waits until the tracker's watch cache holds the object at
// resourceVersion rv or later, and the tracker has handled that version,
// so that what a test asserts next is about that version.
func (h *harness) waitCached(tb testing.TB, gvr schema.GroupVersionResource, ns, name, rv string) {
	tb.Helper()
	key := name
	if ns != "" {
		key = ns + "/" + name
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.tracker.mu.Lock()
		w := h.tracker.watches[gvr]
		var seen string
		if w != nil {
			seen = w.seen
		}
		h.tracker.mu.Unlock()
		if w != nil && !newer(rv, seen) {
			if obj, ok, _ := w.informer.GetStore().GetByKey(key); ok {
				if m := obj.(*metav1.PartialObjectMetadata); !newer(rv, m.ResourceVersion) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the watch cache did not reach %s at version %s within 10s", key, rv)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// noChange fails when OnChange was called for what the tracker has
// handled so far (see waitCached): it waits until no notification is
// queued or being delivered, then looks.
func (h *harness) noChange(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.tracker.mu.Lock()
		pending := len(h.tracker.notify) + h.tracker.delivering
		h.tracker.mu.Unlock()
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d OnChange calls still pending after 10s", pending)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case c := <-h.changes:
		tb.Errorf("OnChange(%s) without a change", c.owner)
	default:
	}
}

// A controller writing a Deployment's status thirty times costs nothing:
// no suspect, no OnChange, no request. A spec change by another manager
// after them is still a suspect, and drift.
func TestStatusWritesAreNotSuspects(t *testing.T) {
	h, owner := setup(t)
	ns := owner.Namespace
	before := h.requests.n.Load()
	h.waitCached(t, deploymentsGVR, ns, "web", writeStatus(t, ns, 30))
	if s := h.tracker.Suspects(owner); len(s) != 0 {
		t.Fatalf("suspects after status writes only: %+v", s)
	}
	rep := check(t, h, owner)
	if rep.Count != 0 || rep.Suspects != 0 || rep.Requests != 0 {
		t.Errorf("report = %+v, want no suspect and no request", rep)
	}
	if n := h.requests.n.Load() - before; n != 0 {
		t.Errorf("30 status writes cost the tracker %d API requests, want 0", n)
	}
	h.noChange(t)

	// kubectl edit of a field Git sets.
	patch(t, deployment(ns), "kubectl-edit", `{"spec":{"replicas":3}}`)
	h.waitChange(t, owner)
	if s := h.tracker.Suspects(owner); len(s) != 1 || s[0].Kind != "Deployment" {
		t.Fatalf("suspects after a spec edit = %+v, want the Deployment", s)
	}
	want := map[string][]Field{ns + "_web_apps_Deployment": {
		{Path: "/spec/replicas", Change: Changed, Managers: []string{"kubectl-edit"}},
	}}
	rep = check(t, h, owner)
	if diff := cmp.Diff(want, fieldsOf(rep)); diff != "" {
		t.Fatalf("drift (-want +got):\n%s", diff)
	}

	// The controller keeps writing status while the drift stands (mode
	// detect): the answer holds, and costs no request.
	before = h.requests.n.Load()
	h.waitCached(t, deploymentsGVR, ns, "web", writeStatus(t, ns, 10))
	rep = check(t, h, owner)
	if diff := cmp.Diff(want, fieldsOf(rep)); diff != "" {
		t.Errorf("drift after more status writes (-want +got):\n%s", diff)
	}
	if n := h.requests.n.Load() - before; n != 0 || rep.Requests != 0 {
		t.Errorf("status writes on a drifted object cost %d requests (report: %d), want 0", n, rep.Requests)
	}

	// Correct mode re-applies; status writes after that are harmless again.
	h.applyAndRecord(t, owner, readObjects(t, "app.yaml", map[string]string{"PASSWORD": password}))
	h.waitCached(t, deploymentsGVR, ns, "web", writeStatus(t, ns, 5))
	if s := h.tracker.Suspects(owner); len(s) != 0 {
		t.Errorf("suspects after re-apply and status writes: %+v", s)
	}
}

// A label or annotation set by another manager is a suspect, on an object
// without status (a ConfigMap has no generation either), and on one with
// status after status writes.
func TestMetadataEditsAreSuspects(t *testing.T) {
	h, owner := setup(t)
	ns := owner.Namespace
	patch(t, configMap(ns, "settings"), "kubectl-label", `{"metadata":{"labels":{"team":"a"}}}`)
	h.waitChange(t, owner)
	if s := h.tracker.Suspects(owner); len(s) != 1 || s[0].Kind != "ConfigMap" {
		t.Fatalf("suspects after a label = %+v, want the ConfigMap", s)
	}
	h.waitCached(t, deploymentsGVR, ns, "web", writeStatus(t, ns, 3))
	patch(t, deployment(ns), "kubectl-annotate", `{"metadata":{"annotations":{"note":"x"}}}`)
	h.waitSuspects(t, owner, 2)
	// Both cost a Check, which decides: Git sets neither key.
	if rep := check(t, h, owner); rep.Suspects != 2 || rep.Requests != 4 {
		t.Errorf("report = %+v, want 2 suspects checked with 4 requests", rep)
	}
}

// signature tells status-only writes from everything else.
func TestSignature(t *testing.T) {
	at := func(sec int) *metav1.Time {
		tm := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, sec, 0, time.UTC))
		return &tm
	}
	fields := func(raw string) *metav1.FieldsV1 { return &metav1.FieldsV1{Raw: []byte(raw)} }
	base := func() *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
			Generation:  1,
			Labels:      map[string]string{"app": "web"},
			Annotations: map[string]string{"a": "1"},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "tether", Operation: metav1.ManagedFieldsOperationApply, APIVersion: "apps/v1", Time: at(1),
					FieldsType: "FieldsV1", FieldsV1: fields(`{"f:spec":{"f:replicas":{}},"f:metadata":{}}`)},
				{Manager: "controller", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "apps/v1", Time: at(2),
					Subresource: "status", FieldsType: "FieldsV1", FieldsV1: fields(`{"f:status":{"f:replicas":{}}}`)},
			},
		}}
	}
	for _, tc := range []struct {
		name   string
		change func(m *metav1.PartialObjectMetadata)
		same   bool
	}{
		{"nothing", func(*metav1.PartialObjectMetadata) {}, true},
		{"status entry time", func(m *metav1.PartialObjectMetadata) { m.ManagedFields[1].Time = at(9) }, true},
		{"status entry fields", func(m *metav1.PartialObjectMetadata) {
			m.ManagedFields[1].FieldsV1 = fields(`{"f:status":{"f:replicas":{},"f:readyReplicas":{}}}`)
		}, true},
		{"new status manager", func(m *metav1.PartialObjectMetadata) {
			m.ManagedFields = append(m.ManagedFields, metav1.ManagedFieldsEntry{Manager: "other", Operation: "Update", Subresource: "status", Time: at(3)})
		}, true},
		{"entries reordered", func(m *metav1.PartialObjectMetadata) {
			m.ManagedFields[0], m.ManagedFields[1] = m.ManagedFields[1], m.ManagedFields[0]
		}, true},
		{"fieldsV1 key order", func(m *metav1.PartialObjectMetadata) {
			m.ManagedFields[0].FieldsV1 = fields(`{"f:metadata":{}, "f:spec":{"f:replicas":{}}}`)
		}, true},
		{"resourceVersion", func(m *metav1.PartialObjectMetadata) { m.ResourceVersion = "99" }, true},
		{"spec manager time", func(m *metav1.PartialObjectMetadata) { m.ManagedFields[0].Time = at(5) }, false},
		{"spec manager fields", func(m *metav1.PartialObjectMetadata) {
			m.ManagedFields[0].FieldsV1 = fields(`{"f:spec":{}}`)
		}, false},
		{"new spec manager", func(m *metav1.PartialObjectMetadata) {
			m.ManagedFields = append(m.ManagedFields, metav1.ManagedFieldsEntry{Manager: "kubectl-edit", Operation: "Update", Time: at(1)})
		}, false},
		{"scale subresource", func(m *metav1.PartialObjectMetadata) {
			m.ManagedFields = append(m.ManagedFields, metav1.ManagedFieldsEntry{Manager: "hpa", Operation: "Update", Subresource: "scale", Time: at(1)})
		}, false},
		{"managedFields cleared", func(m *metav1.PartialObjectMetadata) { m.ManagedFields = nil }, false},
		{"generation", func(m *metav1.PartialObjectMetadata) { m.Generation = 2 }, false},
		{"label", func(m *metav1.PartialObjectMetadata) { m.Labels["team"] = "a" }, false},
		{"annotation value", func(m *metav1.PartialObjectMetadata) { m.Annotations["a"] = "2" }, false},
		{"deleting", func(m *metav1.PartialObjectMetadata) { m.DeletionTimestamp = at(7) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.change(m)
			if got := signature(m) == signature(base()); got != tc.same {
				t.Errorf("same signature = %v, want %v", got, tc.same)
			}
		})
	}
	// slim keeps the signature and the owner, and slimming twice
	// (client-go may call a transform again on a cached object) keeps
	// them too. It keeps no map: with thousands of objects watched, the
	// maps of labels and annotations cost more than the rest of the copy.
	owned := base()
	owned.Labels[v1alpha1.NameLabel], owned.Labels[v1alpha1.NamespaceLabel] = "app", "team-a"
	once, _ := slim(owned)
	twice, _ := slim(once)
	for i, s := range []any{once, twice} {
		m := s.(*metav1.PartialObjectMetadata)
		if got := cachedSignature(m); got != signature(owned) {
			t.Errorf("slim #%d: signature %q, want %q", i+1, got, signature(owned))
		}
		if _, owner := slimmed(m); owner != (Owner{Namespace: "team-a", Name: "app"}) {
			t.Errorf("slim #%d: owner %v, want team-a/app", i+1, owner)
		}
		if m.Labels != nil || m.Annotations != nil || m.ManagedFields != nil {
			t.Errorf("slim #%d kept labels %v, annotations %v, managedFields %v", i+1, m.Labels, m.Annotations, m.ManagedFields)
		}
	}
}
