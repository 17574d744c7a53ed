package drift

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/ssa"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/apply"
)

// BenchmarkNoChange compares a sync where nothing changed, for n
// ConfigMaps in one namespace, side by side on the same API server:
//
//   - tether: Suspects + Check from the watch cache;
//   - apply:  apply.Manager.Apply of the same plan (ssa's ApplyAll: a GET
//     and a server-side dry-run per object);
//   - ssa:    plain ssa.ApplyAllStaged, Flux's path.
//
// Each reports requests/op. The tether variant also reports the heap the
// tracker holds for the n objects (tracker-heap-MiB, measured around
// NewTracker+Record with everything else alive on both sides) and the
// process RSS afterwards. Clients are not rate-limited, so the apply
// variants are measured at their fastest. Run with -benchtime=3x: each
// apply iteration is a whole sync's worth of requests.
func BenchmarkNoChange(b *testing.B) {
	for _, n := range []int{200, 1000, 5000} {
		ns := newNamespace(b)
		owner := Owner{Name: "bench", Namespace: ns}
		objs := benchConfigMaps(n)
		ctx := testContext(b)
		reqs := &counter{}
		bcfg := countedConfig(reqs)
		bcfg.QPS, bcfg.Burst = -1, 0 // no client-side throttling
		c, err := client.New(bcfg, client.Options{})
		if err != nil {
			b.Fatal(err)
		}
		m := apply.NewManager(c, apply.ManagerOptions{})
		plan, err := m.Plan(ctx, objs, apply.Options{Owner: apply.Owner(owner)})
		if err != nil {
			b.Fatal(err)
		}
		res, err := m.Apply(ctx, plan)
		if err != nil {
			b.Fatal(err)
		}

		heapBefore := heapInUse()
		h := newHarness(b)
		if err := h.tracker.Record(ctx, owner, plan.Objects, res.Live); err != nil {
			b.Fatal(err)
		}
		trackerHeap := heapInUse() - heapBefore
		h.waitEchoes(b, owner)

		b.Run(fmt.Sprintf("n=%d/tether", n), func(b *testing.B) {
			before := h.requests.n.Load()
			b.ResetTimer()
			for range b.N {
				if s := h.tracker.Suspects(owner); len(s) != 0 {
					b.Fatalf("%d suspects", len(s))
				}
				rep, err := h.tracker.Check(ctx, owner, nil)
				if err != nil || rep.Count != 0 {
					b.Fatalf("check: %v, %d drifted", err, rep.Count)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(h.requests.n.Load()-before)/float64(b.N), "requests/op")
			b.ReportMetric(float64(trackerHeap)/(1<<20), "tracker-heap-MiB")
			b.ReportMetric(rssMiB(), "rss-MiB")
		})
		for _, impl := range []string{"apply", "ssa"} {
			b.Run(fmt.Sprintf("n=%d/%s", n, impl), func(b *testing.B) {
				before := reqs.n.Load()
				for range b.N {
					var cs *ssa.ChangeSet
					var err error
					if impl == "ssa" {
						cs, err = m.ResourceManager().ApplyAllStaged(ctx, plan.Objects, ssa.DefaultApplyOptions())
					} else {
						var r *apply.Result
						if r, err = m.Apply(ctx, plan); err == nil {
							cs = r.ChangeSet
						}
					}
					if err != nil {
						b.Fatal(err)
					}
					for _, e := range cs.Entries {
						if e.Action != ssa.UnchangedAction {
							b.Fatalf("%s: %s", e.Subject, e.Action)
						}
					}
				}
				b.ReportMetric(float64(reqs.n.Load()-before)/float64(b.N), "requests/op")
			})
		}
		if err := k8s.DeleteAllOf(ctx, objs[0], client.InNamespace(ns)); err != nil {
			b.Log(err)
		}
	}
}

// benchConfigMaps is n ConfigMaps cm-0000, cm-0001, ... without a
// namespace (Plan gives them the owner's).
func benchConfigMaps(n int) []*unstructured.Unstructured {
	objs := make([]*unstructured.Unstructured, n)
	for i := range objs {
		objs[i] = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": fmt.Sprintf("cm-%04d", i)},
			"data":     map[string]any{"index": strconv.Itoa(i)},
		}}
	}
	return objs
}

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// rssMiB is the process's resident set size after returning freed memory
// to the OS; 0 where /proc is missing.
func rssMiB() float64 {
	debug.FreeOSMemory()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkStatusWrites counts the tracker's API requests while a
// controller writes a Deployment's status n times, reacting to each write
// as the sync loop does to OnChange: once the watch cache shows it, Check
// if there are suspects. One op is n status writes; requests/op is what
// the tracker spent on them (the writes themselves are not counted). The
// target is 0: status-only writes are not suspects.
func BenchmarkStatusWrites(b *testing.B) {
	const n = 30
	h := newHarness(b)
	owner := Owner{Name: "app", Namespace: newNamespace(b)}
	h.applyAndRecord(b, owner, readObjects(b, "app.yaml", map[string]string{"PASSWORD": password}))
	ctx := testContext(b)
	var checks int
	before := h.requests.n.Load()
	for b.Loop() {
		for range n {
			h.waitCached(b, deploymentsGVR, owner.Namespace, "web", writeStatus(b, owner.Namespace, 1))
			if len(h.tracker.Suspects(owner)) == 0 {
				continue
			}
			checks++
			if rep, err := h.tracker.Check(ctx, owner, nil); err != nil || rep.Count != 0 {
				b.Fatalf("check: %v, %d drifted", err, rep.Count)
			}
		}
	}
	b.ReportMetric(float64(h.requests.n.Load()-before)/float64(b.N), "requests/op")
	b.ReportMetric(float64(checks)/float64(b.N), "checks/op")
}

// BenchmarkForcedResync measures a forced resync of n ConfigMaps with
// nothing changed, as the sync loop makes it: Plan, Apply, Record. With
// "skip", Apply gets Options.Skip from Tracker.Unchanged and sends nothing;
// "noskip" sends one apply per object (after one LIST). requests/op counts
// the apply's requests.
func BenchmarkForcedResync(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		h := newHarness(b)
		owner := Owner{Name: "bench", Namespace: newNamespace(b)}
		objs := benchConfigMaps(n)
		ctx := testContext(b)
		reqs := &counter{}
		bcfg := countedConfig(reqs)
		bcfg.QPS, bcfg.Burst = -1, 0 // no client-side throttling
		c, err := client.New(bcfg, client.Options{Mapper: k8s.RESTMapper()})
		if err != nil {
			b.Fatal(err)
		}
		m := apply.NewManager(c, apply.ManagerOptions{})
		resync := func(b *testing.B, skip bool) {
			plan, err := m.Plan(ctx, objs, apply.Options{Owner: apply.Owner(owner)})
			if err != nil {
				b.Fatal(err)
			}
			if skip {
				plan.Options.Skip = h.tracker.Unchanged(owner)
			}
			res, err := m.Apply(ctx, plan)
			if err != nil {
				b.Fatal(err)
			}
			if err := h.tracker.Record(ctx, owner, plan.Objects, res.Live); err != nil {
				b.Fatal(err)
			}
		}
		resync(b, false)
		for _, skip := range []bool{true, false} {
			name := "noskip"
			if skip {
				name = "skip"
			}
			b.Run(fmt.Sprintf("n=%d/%s", n, name), func(b *testing.B) {
				h.waitEchoes(b, owner)
				before := reqs.n.Load()
				for b.Loop() {
					resync(b, skip)
				}
				b.ReportMetric(float64(reqs.n.Load()-before)/float64(b.N), "requests/op")
			})
		}
	}
}

// BenchmarkDriftLatency measures, with n ConfigMaps of one owner watched,
// drift correction as the sync loop makes it: an out-of-band edit of one
// of them (sent at t0) → OnChange (notify) → Check reports it drifted
// (check) → the drifted object re-applied and recorded (corrected). It
// reports the median and p95 of each, from t0, in ms. "update" records
// the correction with Update; "record" as before it, with Applied of the
// whole set and Record.
func BenchmarkDriftLatency(b *testing.B) {
	const n = 5000
	h := newHarness(b)
	owner := Owner{Name: "bench", Namespace: newNamespace(b)}
	objs := benchConfigMaps(n)
	h.applyAndRecord(b, owner, objs)
	ctx := testContext(b)
	i := 0
	for _, how := range []string{"update", "record"} {
		b.Run(fmt.Sprintf("n=%d/%s", n, how), func(b *testing.B) {
			h.waitEchoes(b, owner)
			var notify, checked, corrected []time.Duration
			for b.Loop() {
				cm := configMap(owner.Namespace, fmt.Sprintf("cm-%04d", i%n))
				i++
				t0 := time.Now()
				patch(b, cm, "kubectl-edit", fmt.Sprintf(`{"data":{"index":"edited-%d"}}`, i))
				notify = append(notify, h.waitChange(b, owner).Sub(t0))
				rep, err := h.tracker.Check(ctx, owner, nil)
				if err != nil {
					b.Fatal(err)
				}
				checked = append(checked, time.Since(t0))
				if rep.Count != 1 || rep.Drifted[0].Name != cm.Name {
					b.Fatalf("drifted %+v, want %s", rep.Drifted, cm.Name)
				}
				if err := h.correctBy(ctx, owner, []string{rep.Drifted[0].ID}, how == "update"); err != nil {
					b.Fatal(err)
				}
				corrected = append(corrected, time.Since(t0))
			}
			for name, d := range map[string][]time.Duration{"notify": notify, "check": checked, "corrected": corrected} {
				slices.Sort(d)
				b.ReportMetric(ms(d[len(d)/2]), name+"-median-ms")
				b.ReportMetric(ms(d[(len(d)*95+99)/100-1]), name+"-p95-ms")
			}
		})
	}
}

// correctBy re-applies owner's recorded objects ids, as the sync loop
// corrects drift, and records them: with Update or, when update is false,
// as before Update, with Applied of the whole set and Record.
func (h *harness) correctBy(ctx context.Context, owner Owner, ids []string, update bool) error {
	objs, err := h.tracker.Applied(owner, ids)
	if err != nil {
		return err
	}
	release := h.tracker.Hold(owner)
	defer release()
	plan, err := applier.Plan(ctx, objs, apply.Options{Owner: apply.Owner(owner)})
	if err != nil {
		return err
	}
	res, err := applier.Apply(ctx, plan)
	if err != nil {
		return err
	}
	if update {
		return h.tracker.Update(ctx, owner, plan.Objects, res.Live)
	}
	all, err := h.tracker.Applied(owner, nil)
	if err != nil {
		return err
	}
	return h.tracker.Record(ctx, owner, all, res.Live)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
