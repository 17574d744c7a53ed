package sync

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

// requestLog counts the agent's API requests (long-running watches aside,
// which stay open) so that a test can say "this reconcile made none".
// Each is logged as method and path, with " (metadata)" after a
// metadata-only one.
type requestLog struct {
	mu   gosync.Mutex
	reqs []string
}

var agentRequests = &requestLog{}

func (l *requestLog) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Query().Get("watch") != "true" {
			req := r.Method + " " + r.URL.Path
			if strings.Contains(r.Header.Get("Accept"), "as=PartialObjectMetadata") {
				req += " (metadata)"
			}
			l.mu.Lock()
			l.reqs = append(l.reqs, req)
			l.mu.Unlock()
		}
		return next.RoundTrip(r)
	})
}

// since returns the requests made after the first n.
func (l *requestLog) since(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs[n:])
}

func (l *requestLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reqs)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// editConfigMap changes a ConfigMap value as `kubectl edit` would: through
// another field manager.
func editConfigMap(t *testing.T, ns, name, key, value, manager string) {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := k8s.Get(testContext(t), types.NamespacedName{Namespace: ns, Name: name}, cm); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(cm.DeepCopy())
	cm.Data[key] = value
	if err := k8s.Patch(testContext(t), cm, patch, client.FieldOwner(manager)); err != nil {
		t.Fatal(err)
	}
}

func configMapValue(t *testing.T, ns, name, key string) string {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := k8s.Get(testContext(t), types.NamespacedName{Namespace: ns, Name: name}, cm); err != nil {
		return "<" + err.Error() + ">"
	}
	return cm.Data[key]
}

func driftedStatus(gs *v1alpha1.GitSync) string {
	c := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.DriftedCondition)
	if c == nil {
		return "no Drifted condition"
	}
	return fmt.Sprintf("Drifted=%s %s: %s; drift=%+v", c.Status, c.Reason, c.Message, gs.Status.Drift)
}

// A change through a second field manager is detected from the watch,
// reported with the path and the manager, and corrected (mode correct).
func TestDriftCorrected(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "drift-correct")
	_, repo, sha := appRepo(t)
	gs := newGitSync(ns, "app", repo.URL, "./app")
	gs.Spec.Interval = metav1.Duration{Duration: time.Hour} // only the watch can notice
	key := create(t, gs)
	waitApplied(t, key, mainRev(sha))

	start := agentRequests.count()
	editConfigMap(t, ns, "web-config", "greeting", "edited by hand", "kubectl-edit")
	ev := waitEvent(t, key, corev1.EventTypeWarning, v1alpha1.ReasonDriftDetected, "ConfigMap/"+ns+"/web-config", "/data/greeting", "kubectl-edit")
	waitEvent(t, key, corev1.EventTypeNormal, v1alpha1.ReasonDriftCorrected, "re-applied 1")
	eventually(t, waitTimeout, func() error {
		if v := configMapValue(t, ns, "web-config", "greeting"); v != "hello" {
			return fmt.Errorf("greeting = %q, want it corrected to hello", v)
		}
		got := getGitSync(t, key)
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.DriftedCondition)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonDriftCorrected {
			return fmt.Errorf("%s", driftedStatus(got))
		}
		d := got.Status.Drift
		if d == nil || d.Count != 0 || len(d.Objects) != 1 || !d.Objects[0].Corrected ||
			!slices.Contains(d.Objects[0].Paths, "/data/greeting") || !slices.Contains(d.Objects[0].Managers, "kubectl-edit") {
			return fmt.Errorf("drift status %+v", d)
		}
		return nil
	})
	// Detected and corrected in one status write: each is dear with a
	// large inventory.
	if n := statusWritesOf(key, agentRequests.since(start)); n != 1 {
		t.Errorf("%d status writes for one drift corrected, want 1", n)
	}
	if strings.Contains(ev.Note, "edited by hand") {
		t.Errorf("the event shows a value, not only paths: %q", ev.Note)
	}

	// A deleted object is drift too, and is recreated.
	if err := k8s.Delete(testContext(t), service(ns, "web")); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func() error { return get(t, service(ns, "web")) })
}

// In mode detect the change is reported and left alone.
func TestDriftDetectOnly(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "drift-detect")
	_, repo, sha := appRepo(t)
	gs := newGitSync(ns, "app", repo.URL, "./app")
	gs.Spec.Drift.Mode = v1alpha1.DriftDetect
	key := create(t, gs)
	waitApplied(t, key, mainRev(sha))

	editConfigMap(t, ns, "web-config", "greeting", "edited by hand", "kubectl-edit")
	eventually(t, waitTimeout, func() error {
		got := getGitSync(t, key)
		if !meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.DriftedCondition) {
			return fmt.Errorf("%s", driftedStatus(got))
		}
		d := got.Status.Drift
		if d.Count != 1 || d.Objects[0].Corrected || !slices.Contains(d.Objects[0].Paths, "/data/greeting") ||
			!slices.Contains(d.Objects[0].Managers, "kubectl-edit") {
			return fmt.Errorf("drift status %+v", d)
		}
		return nil
	})
	consistently(t, 3*testInterval, func() error {
		if v := configMapValue(t, ns, "web-config", "greeting"); v != "edited by hand" {
			return fmt.Errorf("detect mode changed the object: greeting = %q", v)
		}
		if got := getGitSync(t, key); !meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.DriftedCondition) {
			return fmt.Errorf("drift no longer reported: %s", driftedStatus(got))
		}
		return nil
	})
	if n := countEvents(t, key, corev1.EventTypeWarning, v1alpha1.ReasonDriftDetected); n != 1 {
		t.Errorf("%d DriftDetected events for one change, want 1", n)
	}
}

// Status updates, ignored paths and changes to objects Tether does not
// own are not drift.
func TestNotDrift(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "not-drift")
	_, repo, sha := appRepo(t)
	gs := newGitSync(ns, "app", repo.URL, "./app")
	gs.Spec.Drift.Ignore = []v1alpha1.DriftIgnoreRule{{Group: "apps", Kind: "Deployment", Paths: []string{"/spec/replicas"}}}
	key := create(t, gs)
	waitApplied(t, key, mainRev(sha))

	// A controller writes status.
	d := &appsv1.Deployment{}
	if err := k8s.Get(testContext(t), client.ObjectKeyFromObject(deployment(ns, "web")), d); err != nil {
		t.Fatal(err)
	}
	d.Status.ObservedGeneration = d.Generation
	d.Status.Replicas = 1
	if err := k8s.Status().Update(testContext(t), d, client.FieldOwner("kube-controller-manager")); err != nil {
		t.Fatal(err)
	}
	// An HPA scales the Deployment: an ignored path.
	scale := client.MergeFrom(d.DeepCopy())
	d.Spec.Replicas = ptr(int32(3))
	if err := k8s.Patch(testContext(t), d, scale, client.FieldOwner("horizontal-pod-autoscaler")); err != nil {
		t.Fatal(err)
	}
	// Someone labels an object Tether does not own.
	own := configMap(ns, "not-ours")
	own.Data = map[string]string{"a": "b"}
	if err := k8s.Create(testContext(t), own); err != nil {
		t.Fatal(err)
	}
	own.Labels = map[string]string{"team": "x"}
	if err := k8s.Update(testContext(t), own, client.FieldOwner("kubectl-label")); err != nil {
		t.Fatal(err)
	}

	consistently(t, 4*testInterval, func() error {
		got := getGitSync(t, key)
		if meta.IsStatusConditionTrue(got.Status.Conditions, v1alpha1.DriftedCondition) {
			return fmt.Errorf("reported as drift: %s", driftedStatus(got))
		}
		return nil
	})
	if err := k8s.Get(testContext(t), client.ObjectKeyFromObject(d), d); err != nil || *d.Spec.Replicas != 3 {
		t.Errorf("the ignored replicas were reset: %v %v", err, d.Spec.Replicas)
	}
	if n := countEvents(t, key, corev1.EventTypeWarning, v1alpha1.ReasonDriftDetected); n != 0 {
		t.Errorf("%d DriftDetected events, want none", n)
	}
}

// A reconcile that finds Git unchanged and nothing changed in the cluster
// makes no API request at all, also for a GitSync with a secretRef. Not parallel: the agent then works for this
// test alone, so every request it makes is this GitSync's.
func TestNoChangeReconcileMakesNoRequests(t *testing.T) {
	ns := newNamespace(t, "no-requests")
	srv, repo, sha := appRepo(t)
	key := create(t, newGitSync(ns, "app", repo.URL, "./app"))
	waitApplied(t, key, mainRev(sha))
	waitEvent(t, key, corev1.EventTypeNormal, v1alpha1.ReasonSucceeded, mainRev(sha))
	// A GitSync whose source needs credentials from a Secret: its polls
	// reuse what was read (Credentials), no GET of the Secret each time.
	auth := newAuthApp(t, "no-requests-auth")
	// kube-controller-manager runs beside the API server (TestMain): it
	// fills in the Deployment's status after the apply. Status writes cost
	// nothing, but one that lands between the apply and the drift record
	// costs one check. Wait until the cluster is quiet: two polls in a row
	// (the agent's clock: it lists the ref once per poll) without an agent
	// request.
	eventually(t, waitTimeout, func() error {
		n := agentRequests.count()
		waitPolls(t, srv, "app", 2)
		if reqs := agentRequests.since(n); len(reqs) != 0 {
			return fmt.Errorf("the agent is still busy: %v", reqs)
		}
		return nil
	})

	start := agentRequests.count()
	if start == 0 {
		t.Fatal("the request log saw none of the agent's requests")
	}
	polls := srv.Counts().Repos["app"].Advertisements
	// Several polls happen meanwhile (interval 1 s): each lists the ref.
	eventually(t, waitTimeout, func() error {
		if n := srv.Counts().Repos["app"].Advertisements - polls; n < 3 {
			return fmt.Errorf("%d polls so far", n)
		}
		return nil
	})
	waitPolls(t, auth.srv, "app", 2)
	if reqs := agentRequests.since(start); len(reqs) != 0 {
		t.Fatalf("%d API requests during no-change reconciles, want 0: %v", len(reqs), reqs)
	}
}
