package sync

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

// applyMergePatch applies an RFC 7386 merge patch to the JSON value doc.
func applyMergePatch(doc any, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	d, ok := doc.(map[string]any)
	if !ok {
		d = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(d, k)
			continue
		}
		d[k] = applyMergePatch(d[k], v)
	}
	return d
}

func jsonValue(t testing.TB, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func inventoryOf(n int) *v1alpha1.ResourceInventory {
	inv := &v1alpha1.ResourceInventory{}
	for i := 0; i < n; i++ {
		inv.Entries = append(inv.Entries, v1alpha1.ResourceRef{ID: fmt.Sprintf("ns_cm-%05d__ConfigMap", i), Version: "v1"})
	}
	return inv
}

// The status patch turns the old status into the new one exactly (nested
// members removed become null, lists are replaced whole), carries the
// optimistic lock, and leaves out what did not change, the inventory
// above all.
func TestStatusPatch(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC))
	base := func() *v1alpha1.GitSync {
		gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "ns", ResourceVersion: "42", Generation: 3}}
		gs.Status.Inventory = inventoryOf(50)
		gs.Status.LastAppliedRevision = "main@sha1:1111111111111111111111111111111111111111"
		setCondition(gs, v1alpha1.ReadyCondition, metav1.ConditionTrue, v1alpha1.ReasonSucceeded, "Applied")
		gs.Status.Drift = &v1alpha1.DriftStatus{Count: 1, LastDetectedTime: &now, LastCorrectedTime: &now,
			Objects: []v1alpha1.DriftedObject{{Kind: "ConfigMap", Namespace: "ns", Name: "a", Paths: []string{"/data/a"}}}}
		return gs
	}
	for _, tc := range []struct {
		name          string
		mutate        func(*v1alpha1.GitSync)
		wantInventory bool
	}{
		{"nothing", func(*v1alpha1.GitSync) {}, false},
		{"a condition", func(gs *v1alpha1.GitSync) {
			setCondition(gs, v1alpha1.DriftedCondition, metav1.ConditionFalse, v1alpha1.ReasonNoDrift, "No drift")
		}, false},
		{"a nested member removed", func(gs *v1alpha1.GitSync) { gs.Status.Drift.LastCorrectedTime = nil; gs.Status.Drift.Count = 0 }, false},
		{"a member removed", func(gs *v1alpha1.GitSync) { gs.Status.Drift = nil }, false},
		{"a list shortened", func(gs *v1alpha1.GitSync) { gs.Status.Drift.Objects = nil }, false},
		{"a member added", func(gs *v1alpha1.GitSync) { gs.Status.LastHandledResyncAt = "now" }, false},
		{"the inventory", func(gs *v1alpha1.GitSync) { gs.Status.Inventory = inventoryOf(51) }, true},
		{"the inventory removed", func(gs *v1alpha1.GitSync) { gs.Status.Inventory = nil }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := base()
			after := before.DeepCopy()
			tc.mutate(after)
			data, err := statusPatch(before, after)
			if err != nil {
				t.Fatal(err)
			}
			var patch map[string]any
			if err := json.Unmarshal(data, &patch); err != nil {
				t.Fatal(err)
			}
			if rv := patch["metadata"].(map[string]any)["resourceVersion"]; rv != "42" {
				t.Errorf("patch %s: resourceVersion %v, want the optimistic lock on 42", data, rv)
			}
			st, _ := patch["status"].(map[string]any)
			if _, ok := st["inventory"]; ok != tc.wantInventory {
				t.Errorf("patch %s: inventory in it %v, want %v", data, ok, tc.wantInventory)
			}
			got := applyMergePatch(jsonValue(t, before.Status), st)
			if want := jsonValue(t, after.Status); !reflect.DeepEqual(got, want) {
				t.Errorf("patched status\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// BenchmarkStatusPatch compares the status patch of a GitSync of 5,000
// inventory entries (a condition changed) with controller-runtime's
// MergeFrom, which statusWriter used before.
func BenchmarkStatusPatch(b *testing.B) {
	before := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "ns", ResourceVersion: "42"}}
	before.Status.Inventory = inventoryOf(5000)
	after := before.DeepCopy()
	setCondition(after, v1alpha1.ReadyCondition, metav1.ConditionTrue, v1alpha1.ReasonSucceeded, "Applied")
	b.Run("statusPatch", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := statusPatch(before, after); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("MergeFrom", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}).Data(after); err != nil {
				b.Fatal(err)
			}
		}
	})
}
