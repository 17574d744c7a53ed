package apply

import (
	"fmt"
	"testing"

	"github.com/fluxcd/pkg/ssa"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// BenchmarkApply measures Plan+Apply of n ConfigMaps in one namespace: a
// first apply (everything created, a fresh namespace per iteration) and a
// re-apply where nothing changed. The "ssa" variants run the same plan
// through plain ssa.ApplyAllStaged, for comparison. Run with
// -benchtime=3x: each iteration is a whole sync's worth of API calls.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{200, 1000} {
		for _, impl := range []string{"tether", "ssa"} {
			b.Run(fmt.Sprintf("n=%d/%s/first", n, impl), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					ns := newNamespace(b)
					b.StartTimer()
					if changed := benchApply(b, impl, ns, n); !changed {
						b.Fatal("first apply changed nothing")
					}
				}
			})
			b.Run(fmt.Sprintf("n=%d/%s/unchanged", n, impl), func(b *testing.B) {
				ns := newNamespace(b)
				benchApply(b, impl, ns, n)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if changed := benchApply(b, impl, ns, n); changed {
						b.Fatal("re-apply changed something")
					}
				}
			})
		}
	}
}

// benchApply plans and applies n ConfigMaps into ns and reports whether
// anything changed.
func benchApply(b *testing.B, impl, ns string, n int) bool {
	ctx := testContext(b)
	objs := make([]*unstructured.Unstructured, n)
	for i := range objs {
		objs[i] = configMap("", fmt.Sprintf("cm-%04d", i), map[string]string{"index": fmt.Sprint(i)})
	}
	plan, err := testManager.Plan(ctx, objs, Options{Owner: Owner{Name: "bench", Namespace: ns}})
	if err != nil {
		b.Fatal(err)
	}
	var cs *ssa.ChangeSet
	if impl == "ssa" {
		cs, err = testManager.ResourceManager().ApplyAllStaged(ctx, plan.Objects, ssa.DefaultApplyOptions())
	} else {
		var res *Result
		if res, err = testManager.Apply(ctx, plan); err == nil {
			cs = res.ChangeSet
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	if len(cs.Entries) != n {
		b.Fatalf("%d change-set entries, want %d", len(cs.Entries), n)
	}
	for _, e := range cs.Entries {
		if e.Action != ssa.UnchangedAction {
			return true
		}
	}
	return false
}
