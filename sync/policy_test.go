package sync

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/api/v1alpha1"
)

// The tests of schedules and sync windows run on the real clock: each
// window or schedule is built around the time the test starts so that it is
// open (or closed) for hours, and no test sleeps until a window.

// dailyAt is a cron expression that matches once a day at t's hour and
// minute (UTC).
func dailyAt(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%d %d * * *", t.Minute(), t.Hour())
}

// blockedOf is the Blocked condition, or nil.
func blockedOf(gs *v1alpha1.GitSync) *metav1.Condition {
	return meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.BlockedCondition)
}

func describeBlocked(gs *v1alpha1.GitSync) string {
	s := describe(gs)
	if c := blockedOf(gs); c != nil {
		s += fmt.Sprintf("; Blocked=%s %s: %q", c.Status, c.Reason, c.Message)
	} else {
		s += "; no Blocked condition"
	}
	return s + fmt.Sprintf("; pendingRevision %q, nextSyncTime %v", gs.Status.PendingRevision, gs.Status.NextSyncTime)
}

// waitBlocked waits until the GitSync is Blocked=True with reason, with
// pendingRevision pending and a message holding every string of want.
func waitBlocked(t testing.TB, key types.NamespacedName, reason, pending string, want ...string) *v1alpha1.GitSync {
	t.Helper()
	return waitGitSync(t, key, func(gs *v1alpha1.GitSync) error {
		c := blockedOf(gs)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != reason || gs.Status.PendingRevision != pending {
			return fmt.Errorf("GitSync %s not blocked (%s) with %q pending: %s", key, reason, pending, describeBlocked(gs))
		}
		return mentions(key, c, want)
	})
}

// checkUnblocked fails unless the status shows nothing held back.
func checkUnblocked(t testing.TB, gs *v1alpha1.GitSync) {
	t.Helper()
	if c := blockedOf(gs); (c != nil && c.Status == metav1.ConditionTrue) || gs.Status.PendingRevision != "" || gs.Status.NextSyncTime != nil {
		t.Errorf("still blocked after the sync went ahead: %s", describeBlocked(gs))
	}
}

// resync sets the resync annotation to value.
func resync(t testing.TB, key types.NamespacedName, value string) {
	t.Helper()
	update(t, key, func(gs *v1alpha1.GitSync) {
		metav1.SetMetaDataAnnotation(&gs.ObjectMeta, v1alpha1.ResyncAnnotation, value)
	})
}

// A deny window that is active now holds a new commit back and says so;
// drift is still detected and reported but not corrected; the resync
// annotation gets through only once the window has manualSync; removing
// the window applies what is pending.
func TestDenyWindowHoldsCommits(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "deny-window")
	_, repo, sha1 := appRepo(t)
	gs := newGitSync(ns, "app", repo.URL, "./app")
	gs.Spec.Drift.Mode = v1alpha1.DriftCorrect
	key := create(t, gs)
	waitApplied(t, key, mainRev(sha1))

	// Opened a minute ago, open for two hours: the test runs inside it.
	start := time.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
	schedule := dailyAt(start)
	update(t, key, func(gs *v1alpha1.GitSync) {
		gs.Spec.Windows = []v1alpha1.SyncWindow{{Kind: "deny", Schedule: schedule, Duration: metav1.Duration{Duration: 2 * time.Hour}}}
	})
	// The spec change itself is held back; nothing is pending in Git.
	waitBlocked(t, key, v1alpha1.ReasonSyncWindowClosed, "", "deny window 0 ("+schedule+", 2h)")

	sha2 := commit(t, repo, map[string]string{
		"app/configmap.yaml": configMapYAML("web-config", "", map[string]string{"greeting": "bonjour"}),
	}, nil, "bonjour")
	got := waitBlocked(t, key, v1alpha1.ReasonSyncWindowClosed, mainRev(sha2),
		"sync window closed: deny window 0 ("+schedule+", 2h) until", "next open at "+start.Add(2*time.Hour).Format(time.RFC3339))
	if got.Status.NextSyncTime == nil || !got.Status.NextSyncTime.Time.Equal(start.Add(2*time.Hour)) {
		t.Errorf("nextSyncTime = %v, want %s (the window's end)", got.Status.NextSyncTime, start.Add(2*time.Hour))
	}
	if got.Status.LastAppliedRevision != mainRev(sha1) {
		t.Errorf("lastAppliedRevision = %q while the window is closed", got.Status.LastAppliedRevision)
	}
	if v := configMapValue(t, ns, "web-config", "greeting"); v != "hello" {
		t.Errorf("greeting = %q: the held-back commit was applied", v)
	}

	// Drift is detected and reported while the window is closed, and left
	// alone.
	editConfigMap(t, ns, "web-config", "greeting", "edited by hand", "kubectl-edit")
	eventually(t, waitTimeout, func() error {
		got := getGitSync(t, key)
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.DriftedCondition)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != v1alpha1.ReasonDriftDetected ||
			!strings.Contains(c.Message, "ConfigMap/"+ns+"/web-config") || !strings.Contains(c.Message, "kubectl-edit") {
			return fmt.Errorf("drift not reported: %s", driftedStatus(got))
		}
		return nil
	})
	consistently(t, 3*time.Second, func() error {
		if v := configMapValue(t, ns, "web-config", "greeting"); v != "edited by hand" {
			return fmt.Errorf("greeting = %q: drift corrected (or the commit applied) inside a deny window", v)
		}
		return nil
	})

	// Without manualSync the resync annotation is held back too.
	resync(t, key, "first")
	consistently(t, 3*time.Second, func() error {
		got := getGitSync(t, key)
		if got.Status.LastAppliedRevision != mainRev(sha1) || got.Status.LastHandledResyncAt == "first" {
			return fmt.Errorf("a resync got through a deny window without manualSync: %s", describeBlocked(got))
		}
		return nil
	})
	// manualSync lets the (still unhandled) resync through: it applies the
	// pending revision, which also undoes the drift.
	update(t, key, func(gs *v1alpha1.GitSync) { gs.Spec.Windows[0].ManualSync = true })
	got = waitApplied(t, key, mainRev(sha2))
	checkUnblocked(t, got)
	if got.Status.LastHandledResyncAt != "first" {
		t.Errorf("lastHandledResyncAt = %q", got.Status.LastHandledResyncAt)
	}
	if v := configMapValue(t, ns, "web-config", "greeting"); v != "bonjour" {
		t.Errorf("greeting = %q after the manual sync", v)
	}

	// The window still holds back the next commit...
	sha3 := commit(t, repo, map[string]string{
		"app/configmap.yaml": configMapYAML("web-config", "", map[string]string{"greeting": "hola"}),
	}, nil, "hola")
	waitBlocked(t, key, v1alpha1.ReasonSyncWindowClosed, mainRev(sha3), "deny window 0")
	// ...until it is removed.
	update(t, key, func(gs *v1alpha1.GitSync) { gs.Spec.Windows = nil })
	got = waitApplied(t, key, mainRev(sha3))
	checkUnblocked(t, got)
	if v := configMapValue(t, ns, "web-config", "greeting"); v != "hola" {
		t.Errorf("greeting = %q after the window was removed", v)
	}
}

// An allow window that is open now lets a commit apply at once; one that
// is closed now holds the first sync back until it opens.
func TestAllowWindows(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "allow-window")
	_, repo, sha1 := appRepo(t)

	open := newGitSync(ns, "open", repo.URL, "./app")
	open.Spec.TargetNamespace = ns
	open.Spec.Windows = []v1alpha1.SyncWindow{{Kind: "allow", Schedule: "* * * * *", Duration: metav1.Duration{Duration: time.Hour}}}
	openKey := create(t, open)

	// Opens in three hours (daily), for an hour.
	opens := time.Now().UTC().Truncate(time.Minute).Add(3 * time.Hour)
	closedNS := newNamespace(t, "allow-window-closed")
	closed := newGitSync(ns, "closed", repo.URL, "./app")
	closed.Spec.TargetNamespace = closedNS
	closed.Spec.Windows = []v1alpha1.SyncWindow{{Kind: "allow", Schedule: dailyAt(opens), Duration: metav1.Duration{Duration: time.Hour}}}
	closedKey := create(t, closed)

	got := waitApplied(t, openKey, mainRev(sha1))
	checkUnblocked(t, got)
	mustExist(t, configMap(ns, "web-config"))
	sha2 := commit(t, repo, map[string]string{
		"app/configmap.yaml": configMapYAML("web-config", "", map[string]string{"greeting": "bonjour"}),
	}, nil, "bonjour")
	got = waitApplied(t, openKey, mainRev(sha2))
	checkUnblocked(t, got)

	got = waitBlocked(t, closedKey, v1alpha1.ReasonSyncWindowClosed, mainRev(sha2), "outside every allow window", "next open at "+opens.Format(time.RFC3339))
	if got.Status.NextSyncTime == nil || !got.Status.NextSyncTime.Time.Equal(opens) {
		t.Errorf("nextSyncTime = %v, want %s", got.Status.NextSyncTime, opens)
	}
	mustBeAbsent(t, configMap(closedNS, "web-config"))
}

// A schedule that is not due for months holds back the first sync and
// every new revision (Blocked NotScheduled, nextSyncTime set); the resync
// annotation applies at once.
func TestScheduleHoldsRevisions(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "schedule")
	_, repo, sha1 := appRepo(t)
	// Half a year away, whatever the date.
	due := time.Now().UTC().AddDate(0, 6, 0)
	due = time.Date(due.Year(), due.Month(), min(due.Day(), 28), 0, 0, 0, 0, time.UTC)
	gs := newGitSync(ns, "app", repo.URL, "./app")
	gs.Spec.Schedule = fmt.Sprintf("0 0 %d %d *", due.Day(), int(due.Month()))
	key := create(t, gs)

	got := waitBlocked(t, key, v1alpha1.ReasonNotScheduled, mainRev(sha1),
		fmt.Sprintf("waiting for the schedule %q: next run at %s", gs.Spec.Schedule, due.Format(time.RFC3339)))
	if got.Status.NextSyncTime == nil || !got.Status.NextSyncTime.Time.Equal(due) {
		t.Errorf("nextSyncTime = %v, want %s", got.Status.NextSyncTime, due)
	}
	mustBeAbsent(t, configMap(ns, "web-config"))

	resync(t, key, "now")
	got = waitApplied(t, key, mainRev(sha1))
	checkUnblocked(t, got)
	mustExist(t, configMap(ns, "web-config"))
	if got.Status.LastScheduledTime != nil {
		t.Errorf("lastScheduledTime = %v after a manual sync", got.Status.LastScheduledTime)
	}

	sha2 := commit(t, repo, map[string]string{
		"app/configmap.yaml": configMapYAML("web-config", "", map[string]string{"greeting": "bonjour"}),
	}, nil, "bonjour")
	got = waitBlocked(t, key, v1alpha1.ReasonNotScheduled, mainRev(sha2), "next run at "+due.Format(time.RFC3339))
	if got.Status.LastAppliedRevision != mainRev(sha1) {
		t.Errorf("lastAppliedRevision = %q before the schedule", got.Status.LastAppliedRevision)
	}
	if v := configMapValue(t, ns, "web-config", "greeting"); v != "hello" {
		t.Errorf("greeting = %q: applied before the schedule", v)
	}
	resync(t, key, "again")
	got = waitApplied(t, key, mainRev(sha2))
	checkUnblocked(t, got)
	if v := configMapValue(t, ns, "web-config", "greeting"); v != "bonjour" {
		t.Errorf("greeting = %q after the resync", v)
	}
}

// Invalid cron expressions, durations and time zones: what the CRD schema
// can express it rejects; the rest is Ready=False InvalidSpec and Stalled,
// naming the field.
func TestInvalidSchedulesAndWindows(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "invalid-policy")
	_, repo, _ := appRepo(t)
	hour := metav1.Duration{Duration: time.Hour}

	t.Run("rejected by the CRD", func(t *testing.T) {
		for name, windows := range map[string][]v1alpha1.SyncWindow{
			"kind":     {{Kind: "maybe", Schedule: "* * * * *", Duration: hour}},
			"schedule": {{Kind: "deny", Schedule: "", Duration: hour}},
		} {
			gs := newGitSync(ns, "crd-"+name, repo.URL, "./app")
			gs.Spec.Windows = windows
			err := k8s.Create(testContext(t), gs)
			if err == nil {
				deleteGitSync(t, types.NamespacedName{Namespace: ns, Name: gs.Name}, false)
				t.Errorf("window with a bad %s accepted", name)
				continue
			}
			if !strings.Contains(err.Error(), "spec.windows[0]."+name) {
				t.Errorf("bad %s: error %q does not name the field", name, err)
			}
		}
		// A duration that is not one: the schema's pattern (sent as raw
		// JSON, metav1.Duration cannot hold it).
		gs := newGitSync(ns, "crd-duration", repo.URL, "./app")
		gs.Spec.Windows = []v1alpha1.SyncWindow{{Kind: "deny", Schedule: "* * * * *", Duration: hour}}
		u := toUnstructured(t, gs)
		windows := u.Object["spec"].(map[string]any)["windows"].([]any)
		windows[0].(map[string]any)["duration"] = "one hour"
		err := k8s.Create(testContext(t), u)
		if err == nil {
			deleteGitSync(t, types.NamespacedName{Namespace: ns, Name: gs.Name}, false)
			t.Fatal(`window duration "one hour" accepted`)
		}
		if !strings.Contains(err.Error(), "spec.windows[0].duration") {
			t.Errorf("bad duration: error %q does not name the field", err)
		}
	})

	for _, tc := range []struct {
		name   string
		mutate func(gs *v1alpha1.GitSync)
		want   []string
	}{
		{"bad-cron", func(gs *v1alpha1.GitSync) {
			gs.Spec.Windows = []v1alpha1.SyncWindow{{Kind: "deny", Schedule: "61 * * * *", Duration: hour}}
		}, []string{"spec.windows[0].schedule", "61 * * * *"}},
		{"bad-schedule", func(gs *v1alpha1.GitSync) { gs.Spec.Schedule = "every day" }, []string{"spec.schedule", "every day"}},
		{"zero-duration", func(gs *v1alpha1.GitSync) {
			gs.Spec.Windows = []v1alpha1.SyncWindow{{Kind: "allow", Schedule: "@daily", Duration: metav1.Duration{}}}
		}, []string{"spec.windows[0].duration", "must be positive"}},
		{"bad-zone", func(gs *v1alpha1.GitSync) {
			gs.Spec.Schedule = "@daily"
			gs.Spec.TimeZone = "Mars/Olympus_Mons"
		}, []string{"spec.timeZone", "Mars/Olympus_Mons"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gs := newGitSync(ns, tc.name, repo.URL, "./app")
			gs.Spec.TargetNamespace = newNamespace(t, "invalid-"+tc.name)
			tc.mutate(gs)
			key := create(t, gs)
			got := waitFailed(t, key, v1alpha1.ReasonInvalidSpec, tc.want...)
			stalled := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.StalledCondition)
			if stalled == nil || stalled.Status != metav1.ConditionTrue || stalled.Reason != v1alpha1.ReasonInvalidSpec {
				t.Errorf("Stalled = %+v", stalled)
			}
			mustBeAbsent(t, configMap(gs.Spec.TargetNamespace, "web-config"))
		})
	}
}

// toUnstructured turns gs into an unstructured GitSync, to send fields its
// Go type cannot hold.
func toUnstructured(t testing.TB, gs *v1alpha1.GitSync) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(gs)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("GitSync"))
	return u
}

// The resync annotation on a GitSync that never synced (decide says
// whyNew) is a manual sync: the schedule does not hold it back, and a
// manualSync window lets it through.
func TestTimeGateResyncBeforeFirstSync(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))}}
	gs.Spec.Schedule = "0 0 1 6 *"
	gs.Spec.Windows = []v1alpha1.SyncWindow{{Kind: "deny", Schedule: "0 11 * * *", Duration: metav1.Duration{Duration: 2 * time.Hour}, ManualSync: true}}
	pol, err := policy(gs)
	if err != nil {
		t.Fatal(err)
	}
	if why := decide(gs, "main@sha1:x"); why != whyNew {
		t.Fatalf("decide = %q", why)
	}
	if b, _ := timeGate(gs, pol, now, whyNew); b == nil || b.reason != v1alpha1.ReasonNotScheduled {
		t.Errorf("first sync without a resync: %+v, want NotScheduled", b)
	}
	windowsOnly := gs.DeepCopy()
	windowsOnly.Spec.Schedule = ""
	wpol, err := policy(windowsOnly)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := timeGate(windowsOnly, wpol, now, whyNew); b == nil || b.reason != v1alpha1.ReasonSyncWindowClosed {
		t.Errorf("first sync inside the deny window: %+v, want SyncWindowClosed", b)
	}
	gs.Annotations = map[string]string{v1alpha1.ResyncAnnotation: "now"}
	if b, _ := timeGate(gs, pol, now, whyNew); b != nil {
		t.Errorf("first sync asked for by the resync annotation held back: %+v", b)
	}
	gs.Spec.Windows[0].ManualSync = false
	if pol, err = policy(gs); err != nil {
		t.Fatal(err)
	}
	if b, _ := timeGate(gs, pol, now, whyNew); b == nil || b.reason != v1alpha1.ReasonSyncWindowClosed {
		t.Errorf("resync inside a deny window without manualSync: %+v, want SyncWindowClosed", b)
	}
}
