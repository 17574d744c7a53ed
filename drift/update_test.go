package drift

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/apply"
)

// correct re-applies owner's drifted objects and records them with
// Update, as the sync loop does. It returns the API requests the tracker
// made meanwhile.
func (h *harness) correct(t *testing.T, owner Owner, rep *Report) int64 {
	t.Helper()
	ids := make([]string, 0, len(rep.Drifted))
	for _, o := range rep.Drifted {
		ids = append(ids, o.ID)
	}
	before := h.requests.n.Load()
	if err := h.correctBy(testContext(t), owner, ids, true); err != nil {
		t.Fatalf("correct: %v", err)
	}
	return h.requests.n.Load() - before
}

// TestUpdateRecordsACorrection: after a correction recorded with Update,
// the corrected object is clean (no suspect, skipped by the next resync),
// the rest of the record is kept (a later edit of another object is still
// drift), and Update made no request.
func TestUpdateRecordsACorrection(t *testing.T) {
	h, owner := setup(t)
	ns := owner.Namespace
	if err := h.tracker.Update(testContext(t), Owner{Name: "never", Namespace: ns}, nil, nil); err == nil {
		t.Error("Update of an owner never recorded: no error")
	}
	h.waitEchoes(t, owner)

	cm := configMap(ns, "settings")
	patch(t, cm, "kubectl-edit", `{"data":{"greeting":"hi"}}`)
	h.waitChange(t, owner)
	rep := check(t, h, owner)
	if rep.Count != 1 {
		t.Fatalf("drifted = %+v, want the ConfigMap", fieldsOf(rep))
	}
	if n := h.correct(t, owner, rep); n != 0 {
		t.Errorf("Update made %d requests, want 0", n)
	}
	if s := h.tracker.Suspects(owner); len(s) != 0 {
		t.Errorf("suspects after the correction: %+v", s)
	}
	h.waitEchoes(t, owner)
	skipped, _, requests := h.resync(t, owner, readObjects(t, "app.yaml", map[string]string{"PASSWORD": password}))
	if len(skipped) != 4 || requests != 0 {
		t.Errorf("resync after the correction: skipped %v, %d requests; want all 4 skipped, none", skipped, requests)
	}

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
	patch(t, svc, "kubectl-edit", `{"spec":{"selector":{"app":"other"}}}`)
	h.waitChange(t, owner)
	rep = check(t, h, owner)
	var drifted []string
	for _, o := range rep.Drifted {
		drifted = append(drifted, o.Kind)
	}
	if diff := cmp.Diff([]string{"Service"}, drifted); diff != "" {
		t.Errorf("drift after a later edit (-want +got):\n%s", diff)
	}
}

// TestUpdateWithAnAutoscaler: an autoscaler added by Update changes what
// is scaled, as a Record would.
func TestUpdateWithAnAutoscaler(t *testing.T) {
	h, owner := setup(t)
	hpa := objectsOf(t, hpaYAML)
	hpa[0].SetNamespace("")
	plan, err := applier.Plan(testContext(t), hpa, apply.Options{Owner: apply.Owner(owner)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := applier.Apply(testContext(t), plan)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.tracker.Update(testContext(t), owner, plan.Objects, res.Live); err != nil {
		t.Fatal(err)
	}
	if s := h.tracker.Scaled(owner); len(s) != 1 || s[0].Name != "web" {
		t.Errorf("Scaled = %+v, want Deployment web", s)
	}
	all, err := h.tracker.Applied(owner, nil)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range all {
		kinds = append(kinds, o.GetKind())
	}
	if len(all) != 5 {
		t.Errorf("recorded %v, want the 4 objects and the autoscaler", kinds)
	}
}
