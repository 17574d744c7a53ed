package sync

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/source"
)

var registryKey = types.NamespacedName{Namespace: "ns", Name: "gs"}

// The cancel registry cancels a running reconcile for newer work only,
// with errSuperseded as the cause, and forgets it when it ends.
func TestInflightSupersede(t *testing.T) {
	t.Parallel()
	var f inflight
	w1 := work{generation: 1}
	ctx, done := f.begin(context.Background(), registryKey, w1)
	if f.supersede(registryKey, w1) || ctx.Err() != nil {
		t.Fatal("the same work cancelled the reconcile doing it")
	}
	if f.supersede(types.NamespacedName{Namespace: "ns", Name: "other"}, work{generation: 9}) || ctx.Err() != nil {
		t.Fatal("work for another GitSync cancelled this one")
	}
	if !f.supersede(registryKey, work{generation: 1, resync: "t1"}) {
		t.Fatal("a new resync value did not supersede the running reconcile")
	}
	if !superseded(ctx) || !errors.Is(context.Cause(ctx), errSuperseded) {
		t.Fatalf("cause = %v, want errSuperseded", context.Cause(ctx))
	}
	done()
	if f.supersede(registryKey, work{generation: 2}) || f.cancel(registryKey) {
		t.Fatal("a finished reconcile was still registered")
	}
}

// A reconcile that ended is not cancelled by newer work for the next one,
// and a late done of an older reconcile does not unregister a newer one.
func TestInflightDoneKeepsNewer(t *testing.T) {
	t.Parallel()
	var f inflight
	_, doneOld := f.begin(context.Background(), registryKey, work{generation: 1})
	ctx, doneNew := f.begin(context.Background(), registryKey, work{generation: 2})
	doneOld()
	if !f.cancel(registryKey) || !superseded(ctx) {
		t.Fatal("the newer reconcile was unregistered by the older one's done")
	}
	doneNew()
}

// Only newer work or an explicit cancel counts as superseded; the sync
// timeout does not.
func TestSupersededIsNotTimeout(t *testing.T) {
	t.Parallel()
	var f inflight
	ctx, done := f.begin(context.Background(), registryKey, work{generation: 1})
	defer done()
	tctx, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-tctx.Done()
	if superseded(tctx) {
		t.Fatal("a timed-out sync counted as superseded")
	}
	f.cancel(registryKey)
	if !superseded(ctx) {
		t.Fatal("cancel did not supersede")
	}
}

func gitSyncFor(gen, observed int64, applied, resyncAnn, resyncHandled string, ready metav1.ConditionStatus) *v1alpha1.GitSync {
	gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Generation: gen}}
	if resyncAnn != "" {
		gs.Annotations = map[string]string{v1alpha1.ResyncAnnotation: resyncAnn}
	}
	gs.Status.ObservedGeneration = observed
	gs.Status.LastAppliedRevision = applied
	gs.Status.LastHandledResyncAt = resyncHandled
	if ready != "" {
		gs.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ReadyCondition, Status: ready, Reason: "X"}}
	}
	return gs
}

func attempted(gs *v1alpha1.GitSync, rev string) *v1alpha1.GitSync {
	gs.Status.LastAttemptedRevision = rev
	return gs
}

func TestDecide(t *testing.T) {
	t.Parallel()
	const r1, r2 = "main@sha1:1111111111111111111111111111111111111111", "main@sha1:2222222222222222222222222222222222222222"
	T, F, U := metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown
	for _, tc := range []struct {
		name string
		gs   *v1alpha1.GitSync
		rev  string
		want string
	}{
		{"never synced", gitSyncFor(1, 0, "", "", "", ""), r1, whyNew},
		{"up to date", gitSyncFor(1, 1, r1, "", "", T), r1, whyNone},
		{"up to date, resync handled", gitSyncFor(1, 1, r1, "t1", "t1", T), r1, whyNone},
		{"new revision", gitSyncFor(1, 1, r1, "", "", T), r2, whyRevision},
		{"spec changed", gitSyncFor(2, 1, r1, "", "", T), r1, whySpec},
		{"resync asked", gitSyncFor(1, 1, r1, "t2", "t1", T), r1, whyResync},
		{"resync asked first time", gitSyncFor(1, 1, r1, "t1", "", T), r1, whyResync},
		{"resync wins over a new revision", gitSyncFor(1, 1, r1, "t2", "t1", T), r2, whyResync},
		{"annotation removed", gitSyncFor(1, 1, r1, "", "t1", T), r1, whyResync},
		{"spec wins over a new revision", gitSyncFor(2, 1, r1, "", "", T), r2, whySpec},
		{"last sync failed", gitSyncFor(1, 1, r1, "", "", F), r1, whyRetry},
		{"last sync interrupted", gitSyncFor(1, 1, r1, "", "", U), r1, whyIncomplete},
		{"applied but no condition", gitSyncFor(1, 1, r1, "", "", ""), r1, whyIncomplete},
		{"first sync failed, same revision", gitSyncFor(1, 1, "", "", "", F), r1, whyRevision},
		{"first sync failed, generation moved", gitSyncFor(2, 1, "", "", "", F), r1, whySpec},
		{"attempted revision failed", attempted(gitSyncFor(1, 1, r1, "", "", F), r2), r2, whyRetry},
		{"first attempted revision failed", attempted(gitSyncFor(1, 1, "", "", "", F), r1), r1, whyRetry},
		{"newer revision after a failed one", attempted(gitSyncFor(1, 1, r1, "", "", F), r2), "main@sha1:3333333333333333333333333333333333333333", whyRevision},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decide(tc.gs, tc.rev); got != tc.want {
				t.Errorf("decide = %q, want %q", got, tc.want)
			}
		})
	}
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func TestBackoff(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	// failing gives a GitSync whose Ready condition went False d ago (no
	// condition when d < 0).
	failing := func(interval time.Duration, retry *metav1.Duration, d time.Duration) *v1alpha1.GitSync {
		gs := &v1alpha1.GitSync{Spec: v1alpha1.GitSyncSpec{Interval: metav1.Duration{Duration: interval}, RetryInterval: retry}}
		if d >= 0 {
			gs.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ReadyCondition, Status: metav1.ConditionFalse,
				Reason: "X", LastTransitionTime: metav1.NewTime(now.Add(-d))}}
		}
		return gs
	}
	half := dur(500 * time.Millisecond)
	for _, tc := range []struct {
		name string
		gs   *v1alpha1.GitSync
		want time.Duration
	}{
		{"first failure", failing(2*time.Second, half, 0), 500 * time.Millisecond},
		{"no Ready condition", failing(2*time.Second, half, -1), 500 * time.Millisecond},
		{"failing for one retry doubles", failing(2*time.Second, half, 500*time.Millisecond), time.Second},
		{"failing for three retries", failing(8*time.Second, half, 1500*time.Millisecond), 2 * time.Second},
		{"reaches the interval", failing(2*time.Second, half, 1500*time.Millisecond), 2 * time.Second},
		{"capped at interval", failing(2*time.Second, half, time.Hour), 2 * time.Second},
		{"cap is not a power of two", failing(3*time.Second, dur(time.Second), 3*time.Second), 3 * time.Second},
		{"defaults", failing(0, nil, 0), DefaultRetryInterval},
		{"defaults capped at default interval", failing(0, nil, 24*time.Hour), DefaultInterval},
		{"default retry above a short interval", failing(3*time.Second, nil, 0), 3 * time.Second},
		{"retry above interval", failing(time.Second, dur(10*time.Second), 0), time.Second},
		{"zero retry interval means default", failing(time.Hour, dur(0), DefaultRetryInterval), 2 * DefaultRetryInterval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := backoff(tc.gs, now); got != tc.want {
				t.Errorf("backoff = %s, want %s", got, tc.want)
			}
		})
	}
	ready := failing(2*time.Second, half, time.Hour)
	ready.Status.Conditions[0].Status = metav1.ConditionTrue
	if got := backoff(ready, now); got != 500*time.Millisecond {
		t.Errorf("backoff of a Ready GitSync = %s, want the retry interval", got)
	}
}

func TestWithJitter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		d    time.Duration
		rnd  float64
		want time.Duration
	}{
		{time.Minute, 0, time.Minute},
		{time.Minute, 0.5, time.Minute + 3*time.Second},
		{10 * time.Second, 1, 11 * time.Second},
		{0, 0.7, 0},
	} {
		if got := withJitter(tc.d, tc.rnd); got != tc.want {
			t.Errorf("withJitter(%s, %v) = %s, want %s", tc.d, tc.rnd, got, tc.want)
		}
	}
	gs := &v1alpha1.GitSync{Spec: v1alpha1.GitSyncSpec{Interval: metav1.Duration{Duration: time.Minute}}}
	for range 1000 {
		if got := nextPoll(gs); got < time.Minute || got >= time.Minute+6*time.Second {
			t.Fatalf("nextPoll = %s, want within [1m, 1m6s)", got)
		}
	}
}

func TestFollows(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ref    source.Ref
		pushed string
		want   bool
	}{
		{source.Ref{Branch: "main"}, "main", true},
		{source.Ref{Branch: "main"}, "refs/heads/main", true},
		{source.Ref{Branch: "main"}, "dev", false},
		{source.Ref{Branch: "main"}, "", true},
		{source.Ref{Tag: "v1.0.0"}, "v1.0.0", true},
		{source.Ref{Tag: "v1.0.0"}, "refs/tags/v1.0.1", false},
		{source.Ref{Semver: ">=1.0"}, "v1.2.0", true},
		{source.Ref{Commit: strings.Repeat("a", 40)}, "main", false},
	} {
		if got := follows(tc.ref, tc.pushed); got != tc.want {
			t.Errorf("follows(%+v, %q) = %v, want %v", tc.ref, tc.pushed, got, tc.want)
		}
	}
}

func TestValidateCrossNamespaceRefs(t *testing.T) {
	t.Parallel()
	gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "app"}}
	gs.Spec.Source.URL = "https://git.example.com/a.git"
	gs.Spec.DependsOn = []v1alpha1.DependencyReference{{Name: "base"}, {Name: "platform", Namespace: "tether-system"}}
	if err := (&Reconciler{DefaultServiceAccount: "deployer"}).validate(gs); err != nil {
		t.Errorf("cross-namespace dependency refused without --no-cross-namespace-refs: %v", err)
	}
	err := (&Reconciler{NoCrossNamespaceRefs: true, DefaultServiceAccount: "deployer"}).validate(gs)
	if err == nil || !strings.Contains(err.Error(), "tether-system/platform") {
		t.Errorf("validate with NoCrossNamespaceRefs = %v, want a refusal naming tether-system/platform", err)
	}
	gs.Spec.DependsOn = gs.Spec.DependsOn[:1]
	if err := (&Reconciler{NoCrossNamespaceRefs: true, DefaultServiceAccount: "deployer"}).validate(gs); err != nil {
		t.Errorf("a same-namespace dependency refused: %v", err)
	}
}

func TestApplierForServiceAccount(t *testing.T) {
	t.Parallel()
	own := &stubApplier{name: "agent"}
	impersonating := func(ns, sa string) (Applier, error) { return &stubApplier{name: ns + "/" + sa}, nil }
	for _, tc := range []struct {
		name                       string
		agentNS, ns, defaultSA, sa string
		noImpersonation            bool
		want, wantErr              string
	}{
		{name: "platform GitSync, agent's rights", agentNS: "tether-system", ns: "tether-system", want: "agent"},
		{name: "platform GitSync names an account", agentNS: "tether-system", ns: "tether-system", sa: "deployer", want: "tether-system/deployer"},
		{name: "tenant without account or default", agentNS: "tether-system", ns: "team-a", wantErr: "names no spec.serviceAccountName"},
		{name: "no agent namespace: nobody is the platform", ns: "tether-system", wantErr: "names no spec.serviceAccountName"},
		{name: "tenant gets the default", agentNS: "tether-system", ns: "team-a", defaultSA: "tenant", want: "team-a/tenant"},
		{name: "tenant's own account wins", agentNS: "tether-system", ns: "team-a", defaultSA: "tenant", sa: "deployer", want: "team-a/deployer"},
		{name: "platform GitSync ignores the default", agentNS: "tether-system", ns: "tether-system", defaultSA: "tenant", want: "agent"},
		{name: "another namespace's account", agentNS: "tether-system", ns: "team-a", sa: "system:serviceaccount:tether-system:tether-agent", wantErr: "named by its name alone"},
		{name: "namespace/name", agentNS: "tether-system", ns: "team-a", sa: "tether-system/tether-agent", wantErr: "named by its name alone"},
		{name: "account but no impersonation", agentNS: "tether-system", ns: "team-a", sa: "deployer", noImpersonation: true, wantErr: "no impersonating applier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Reconciler{Applier: own, ApplierFor: impersonating, AgentNamespace: tc.agentNS, DefaultServiceAccount: tc.defaultSA}
			if tc.noImpersonation {
				r.ApplierFor = nil
			}
			gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Namespace: tc.ns, Name: "app"}}
			gs.Spec.ServiceAccountName = tc.sa
			a, err := r.applierFor(gs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := a.(*stubApplier).name; got != tc.want {
				t.Errorf("applier %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidateRefusesOtherNamespaces(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		defaultSA string
		mutate    func(*v1alpha1.GitSync)
		want      string
	}{
		{"secretRef namespace/name", "deployer", func(gs *v1alpha1.GitSync) {
			gs.Spec.Source.SecretRef = &v1alpha1.LocalObjectReference{Name: "tether-system/git"}
		}, "spec.source.secretRef.name"},
		{"serviceAccountName with a namespace", "deployer", func(gs *v1alpha1.GitSync) { gs.Spec.ServiceAccountName = "kube-system:admin" }, "spec.serviceAccountName"},
		{"no account anywhere", "", func(gs *v1alpha1.GitSync) {}, "names no spec.serviceAccountName"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Reconciler{AgentNamespace: "tether-system", DefaultServiceAccount: tc.defaultSA}
			gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "app"},
				Spec: v1alpha1.GitSyncSpec{Source: v1alpha1.GitSource{URL: "https://git.example/a.git"}}}
			tc.mutate(gs)
			if err := r.validate(gs); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate = %v, want an error about %q", err, tc.want)
			}
		})
	}
	var se *StageError
	r := &Reconciler{AgentNamespace: "tether-system"}
	gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "app"},
		Spec: v1alpha1.GitSyncSpec{Source: v1alpha1.GitSource{URL: "https://git.example/a.git"}}}
	if err := r.validate(gs); !errors.As(err, &se) || se.Reason != v1alpha1.ReasonServiceAccountRequired || !se.User {
		t.Fatalf("validate = %v, want a user error with reason %s", err, v1alpha1.ReasonServiceAccountRequired)
	}
}

// stubApplier only names itself: applierFor's choice is what is tested.
type stubApplier struct {
	Applier
	name string
}
