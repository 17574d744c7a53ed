package drift

import (
	"context"
	"testing"

	"fmt"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/testenv"
)

// TestObjectsStates: Objects lists every recorded object from memory, in
// sync after the apply, StateChanged once the watch shows an edit, StateDrifted
// with the field's path once Check judged it, StateMissing once deleted.
func TestObjectsStates(t *testing.T) {
	h, owner := setup(t)
	ns := owner.Namespace
	if _, ok := h.tracker.Objects(Owner{Name: "other", Namespace: ns}); ok {
		t.Error("Objects of an owner never recorded says ok")
	}
	h.waitEchoes(t, owner)
	before := h.requests.n.Load()
	states := func() map[string]State {
		objs, ok := h.tracker.Objects(owner)
		if !ok {
			t.Fatal("Objects: nothing recorded")
		}
		out := map[string]State{}
		for _, o := range objs {
			out[o.Kind+"/"+o.Name] = o.State
			if o.Kind == "Deployment" && (o.Group != "apps" || o.Version != "v1" || o.Resource != "deployments" || o.Namespace != ns) {
				t.Errorf("deployment: %+v", o)
			}
		}
		return out
	}
	want := map[string]State{"ConfigMap/settings": StateInSync, "Secret/credentials": StateInSync, "Deployment/web": StateInSync, "Service/web": StateInSync}
	if diff := cmp.Diff(want, states()); diff != "" {
		t.Fatalf("after apply (-want +got):\n%s", diff)
	}

	patch(t, configMap(ns, "settings"), "kubectl-edit", `{"data":{"greeting":"hi"}}`)
	h.waitSuspects(t, owner, 1)
	want["ConfigMap/settings"] = StateChanged
	if diff := cmp.Diff(want, states()); diff != "" {
		t.Fatalf("after an edit (-want +got):\n%s", diff)
	}
	check(t, h, owner)
	objs, _ := h.tracker.Objects(owner)
	for _, o := range objs {
		if o.Name == "settings" && (o.State != StateDrifted || !cmp.Equal(o.Paths, []string{"/data/greeting"}) || o.Since.IsZero()) {
			t.Errorf("after Check: %+v, want StateDrifted at /data/greeting", o)
		}
	}

	if err := k8s.Delete(context.Background(), configMap(ns, "settings")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := states()["ConfigMap/settings"]; got != StateMissing {
			return fmt.Errorf("settings is %s, want %s", got, StateMissing)
		}
		return nil
	})
	// Objects itself makes no request (Check above made some).
	n := h.requests.n.Load()
	h.tracker.Objects(owner)
	if got := h.requests.n.Load() - n; got != 0 || before > n {
		t.Errorf("Objects made %d API requests", got)
	}
}
