package sync

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/source"
)

// recv waits (generously) for a value on ch.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// none checks that nothing arrives on ch for a short while.
func none[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("unexpected %s", what)
	case <-time.After(100 * time.Millisecond):
	}
}

// blocking returns a job that reports its start, blocks until its context
// ends, then reports the end.
func blocking(started, stopped chan<- string, name string) func(ctx context.Context) {
	return func(ctx context.Context) {
		started <- name
		<-ctx.Done()
		stopped <- name
	}
}

var runnerKey = types.NamespacedName{Namespace: "ns", Name: "gs"}

func TestRunnerLatestWins(t *testing.T) {
	t.Parallel()
	r := newRunner(4)
	started, stopped := make(chan string, 10), make(chan string, 10)
	w1 := want{Revision: "main@sha1:1", Generation: 1}
	w2 := want{Revision: "main@sha1:2", Generation: 1}

	if !r.start(context.Background(), runnerKey, w1, blocking(started, stopped, "one")) {
		t.Fatal("first start refused")
	}
	if got := recv(t, started, "first start"); got != "one" {
		t.Fatalf("started %q", got)
	}
	if !r.busy(runnerKey) {
		t.Error("not busy while a job runs")
	}
	// Same work again: a no-op, the running job is not disturbed.
	if r.start(context.Background(), runnerKey, w1, blocking(started, stopped, "dup")) {
		t.Error("same work started twice")
	}
	none(t, started, "start of a duplicate")
	none(t, stopped, "stop of the first job by a duplicate")

	// Different work: the running job is cancelled first, then the new one
	// runs.
	if !r.start(context.Background(), runnerKey, w2, blocking(started, stopped, "two")) {
		t.Fatal("newer work refused")
	}
	if got := recv(t, stopped, "cancel of the first job"); got != "one" {
		t.Fatalf("stopped %q", got)
	}
	if got := recv(t, started, "second start"); got != "two" {
		t.Fatalf("started %q", got)
	}
	// Asking for the older work again is different work too.
	if r.start(context.Background(), runnerKey, w2, blocking(started, stopped, "dup2")) {
		t.Error("same work started twice")
	}

	// cancel stops the job and returns only once it has stopped.
	r.cancel(runnerKey)
	select {
	case got := <-stopped:
		if got != "two" {
			t.Fatalf("stopped %q", got)
		}
	default:
		t.Fatal("cancel returned before the job stopped")
	}
	if r.busy(runnerKey) {
		t.Error("busy after cancel")
	}
	r.wait()
}

func TestRunnerFinishedWorkCanRunAgain(t *testing.T) {
	t.Parallel()
	r := newRunner(1)
	var runs atomic.Int32
	done := make(chan struct{}, 2)
	w := want{Revision: "main@sha1:1"}
	fn := func(context.Context) { runs.Add(1); done <- struct{}{} }
	if !r.start(context.Background(), runnerKey, w, fn) {
		t.Fatal("start refused")
	}
	recv(t, done, "first run")
	r.wait()
	if r.busy(runnerKey) {
		t.Error("busy after the job returned")
	}
	// A failed sync of the same revision is retried later: the runner must
	// accept the same work once the earlier run is over.
	if !r.start(context.Background(), runnerKey, w, fn) {
		t.Fatal("same work refused after the first run finished")
	}
	recv(t, done, "second run")
	r.wait()
	if n := runs.Load(); n != 2 {
		t.Errorf("%d runs, want 2", n)
	}
}

func TestRunnerLimitAndCancelWhileWaiting(t *testing.T) {
	t.Parallel()
	r := newRunner(1)
	started, stopped := make(chan string, 10), make(chan string, 10)
	other := types.NamespacedName{Namespace: "ns", Name: "other"}
	r.start(context.Background(), runnerKey, want{Revision: "a"}, blocking(started, stopped, "a"))
	recv(t, started, "first job")
	// One slot: the second key waits.
	r.start(context.Background(), other, want{Revision: "b"}, blocking(started, stopped, "b"))
	none(t, started, "second job beyond the limit")
	if !r.busy(other) {
		t.Error("a waiting job is not busy")
	}
	// Cancelled while waiting: it never runs.
	r.cancel(other)
	if r.busy(other) {
		t.Error("busy after cancel")
	}
	r.cancel(runnerKey)
	recv(t, stopped, "first job's stop")
	r.wait()
	none(t, started, "start of a job cancelled while waiting")
}

func TestRunnerParentCancel(t *testing.T) {
	t.Parallel()
	r := newRunner(2)
	ctx, cancel := context.WithCancel(context.Background())
	started, stopped := make(chan string, 10), make(chan string, 10)
	r.start(ctx, runnerKey, want{Revision: "a"}, blocking(started, stopped, "a"))
	recv(t, started, "start")
	cancel()
	recv(t, stopped, "stop on the parent's cancel")
	r.wait()
	if r.busy(runnerKey) {
		t.Error("busy after the job stopped")
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
	spec := func(interval time.Duration, retry *metav1.Duration) *v1alpha1.GitSync {
		return &v1alpha1.GitSync{Spec: v1alpha1.GitSyncSpec{Interval: metav1.Duration{Duration: interval}, RetryInterval: retry}}
	}
	for _, tc := range []struct {
		name     string
		gs       *v1alpha1.GitSync
		failures int
		want     time.Duration
	}{
		{"first failure", spec(2*time.Second, dur(500*time.Millisecond)), 1, 500 * time.Millisecond},
		{"zero failures", spec(2*time.Second, dur(500*time.Millisecond)), 0, 500 * time.Millisecond},
		{"second doubles", spec(2*time.Second, dur(500*time.Millisecond)), 2, time.Second},
		{"third reaches interval", spec(2*time.Second, dur(500*time.Millisecond)), 3, 2 * time.Second},
		{"capped at interval", spec(2*time.Second, dur(500*time.Millisecond)), 4, 2 * time.Second},
		{"many failures stay capped", spec(2*time.Second, dur(500*time.Millisecond)), 1 << 20, 2 * time.Second},
		{"cap is not a power of two", spec(3*time.Second, dur(time.Second)), 3, 3 * time.Second},
		{"defaults", spec(0, nil), 1, DefaultRetryInterval},
		{"defaults capped at default interval", spec(0, nil), 100, DefaultInterval},
		{"default retry above a short interval", spec(3*time.Second, nil), 1, 3 * time.Second},
		{"retry above interval", spec(time.Second, dur(10*time.Second)), 1, time.Second},
		{"zero retry interval means default", spec(time.Hour, dur(0)), 2, 2 * DefaultRetryInterval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := backoff(tc.gs, tc.failures); got != tc.want {
				t.Errorf("backoff(%d) = %s, want %s", tc.failures, got, tc.want)
			}
		})
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

// Work superseded while it waits for the work before it never runs: a
// burst of new revisions runs the newest only.
func TestRunnerSupersededWaitingWorkNeverRuns(t *testing.T) {
	t.Parallel()
	for i := range 50 {
		r := newRunner(1)
		release := make(chan struct{})
		started := make(chan string, 10)
		ran := make(chan string, 10)
		// The first job keeps running a moment after its cancellation, as
		// a sync finishing an API call does.
		r.start(context.Background(), runnerKey, want{Revision: "1"}, func(ctx context.Context) {
			started <- "1"
			<-ctx.Done()
			<-release
		})
		recv(t, started, "first job")
		record := func(name string) func(context.Context) {
			return func(ctx context.Context) { ran <- name }
		}
		r.start(context.Background(), runnerKey, want{Revision: "2"}, record("2"))
		r.start(context.Background(), runnerKey, want{Revision: "3"}, record("3"))
		close(release)
		if got := recv(t, ran, "newest job"); got != "3" {
			t.Fatalf("round %d: superseded job %q ran", i, got)
		}
		r.wait()
		if len(ran) != 0 {
			t.Fatalf("round %d: %d more jobs ran", i, len(ran))
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
	var se *stageError
	r := &Reconciler{AgentNamespace: "tether-system"}
	gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "app"},
		Spec: v1alpha1.GitSyncSpec{Source: v1alpha1.GitSource{URL: "https://git.example/a.git"}}}
	if err := r.validate(gs); !errors.As(err, &se) || se.reason != v1alpha1.ReasonServiceAccountRequired || !se.user {
		t.Fatalf("validate = %v, want a user error with reason %s", err, v1alpha1.ReasonServiceAccountRequired)
	}
}

// stubApplier only names itself: applierFor's choice is what is tested.
type stubApplier struct {
	Applier
	name string
}
