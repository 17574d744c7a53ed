package apply

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestApplyLiveVersions checks that Result.Live holds the resourceVersion
// each object has in the cluster, after a create, a no-change re-apply and
// a change.
func TestApplyLiveVersions(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	opts := Options{Owner: Owner{Name: "app", Namespace: ns}}

	liveRVs := func(res *Result) map[string]string {
		t.Helper()
		out := make(map[string]string)
		for _, e := range res.Inventory.Entries {
			u, err := ParseEntry(e)
			if err != nil {
				t.Fatal(err)
			}
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(u.GroupVersionKind())
			if err := k8s.Get(ctx, clientKey(u), live); err != nil {
				t.Fatal(err)
			}
			out[e.ID] = live.GetResourceVersion()
		}
		return out
	}

	for i, greeting := range []string{"hello", "hello", "hi"} {
		objs := readObjects(t, "app.yaml", nil)
		objs[0].Object["data"] = map[string]any{"greeting": greeting}
		res := planAndApply(t, objs, opts)
		if diff := cmp.Diff(liveRVs(res), res.Live); diff != "" {
			t.Errorf("apply #%d: Live (-cluster +result):\n%s", i+1, diff)
		}
	}
}
