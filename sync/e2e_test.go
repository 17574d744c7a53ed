package sync

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// kustomization lists resources as a kustomization.yaml.
func kustomization(resources ...string) string {
	return "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " +
		strings.Join(resources, "\n  - ") + "\n"
}

func configMapYAML(name, namespace string, data map[string]string) string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n")
	if namespace != "" {
		b.WriteString("  namespace: " + namespace + "\n")
	}
	b.WriteString("data:\n")
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s: %q\n", k, data[k])
	}
	return b.String()
}

func inventoryIDs(gs *v1alpha1.GitSync) []string {
	if gs.Status.Inventory == nil {
		return nil
	}
	var ids []string
	for _, e := range gs.Status.Inventory.Entries {
		ids = append(ids, e.ID)
	}
	return ids
}

// A first commit deploys; a second one updates one object and prunes
// another; status, inventory and an event tell which revision is applied.
func TestCommitDeploysUpdatesAndPrunes(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "deploy")
	srv, repo, sha1 := appRepo(t)
	key := create(t, newGitSync(ns, "app", repo.URL, "./app"))

	gs := waitApplied(t, key, mainRev(sha1))
	if gs.Status.ShortRevision != sha1[:7] {
		t.Errorf("shortRevision = %q, want %q", gs.Status.ShortRevision, sha1[:7])
	}
	want := []string{ns + "_web-config__ConfigMap", ns + "_web__Service", ns + "_web_apps_Deployment"}
	if got := inventoryIDs(gs); !slices.Equal(got, want) {
		t.Errorf("inventory = %q, want %q", got, want)
	}
	cm := configMap(ns, "web-config")
	mustExist(t, cm)
	if cm.Data["greeting"] != "hello" {
		t.Errorf("greeting = %q", cm.Data["greeting"])
	}
	if cm.Labels[v1alpha1.NameLabel] != "app" || cm.Labels[v1alpha1.NamespaceLabel] != ns {
		t.Errorf("owner labels = %v", cm.Labels)
	}
	mustExist(t, deployment(ns, "web"))
	mustExist(t, service(ns, "web"))
	waitEvent(t, key, corev1.EventTypeNormal, v1alpha1.ReasonSucceeded, mainRev(sha1))

	sha2 := commit(t, repo, map[string]string{
		"app/configmap.yaml":     configMapYAML("web-config", "", map[string]string{"greeting": "bonjour"}),
		"app/service.yaml":       testenv.DeleteFile,
		"app/kustomization.yaml": kustomization("deployment.yaml", "configmap.yaml"),
	}, nil, "update config, drop service")

	gs = waitApplied(t, key, mainRev(sha2))
	if gs.Status.ShortRevision != sha2[:7] || len(gs.Status.ShortRevision) != 7 {
		t.Errorf("shortRevision = %q, want %q", gs.Status.ShortRevision, sha2[:7])
	}
	if gs.Status.LastAttemptedRevision != mainRev(sha2) {
		t.Errorf("lastAttemptedRevision = %q", gs.Status.LastAttemptedRevision)
	}
	want = []string{ns + "_web-config__ConfigMap", ns + "_web_apps_Deployment"}
	if got := inventoryIDs(gs); !slices.Equal(got, want) {
		t.Errorf("inventory = %q, want %q", got, want)
	}
	if got := gs.Status.Namespaces; len(got) != 1 || got[0].Namespace != ns || got[0].Objects != 2 {
		t.Errorf("namespaces = %+v", got)
	}
	if gs.Status.LastSyncTime == nil {
		t.Error("lastSyncTime not set")
	}
	mustExist(t, cm)
	if cm.Data["greeting"] != "bonjour" {
		t.Errorf("greeting after the second commit = %q", cm.Data["greeting"])
	}
	mustBeAbsent(t, service(ns, "web"))
	mustExist(t, deployment(ns, "web"))
	ev := waitEvent(t, key, corev1.EventTypeNormal, v1alpha1.ReasonSucceeded, mainRev(sha2))
	if !strings.Contains(ev.Note, "deleted") {
		t.Errorf("event %q does not tell about the pruned object", ev.Note)
	}
	// Polls that find nothing new record nothing: one event per revision.
	waitPolls(t, srv, "app", 3)
	if n := countEvents(t, key, corev1.EventTypeNormal, v1alpha1.ReasonSucceeded); n != 2 {
		t.Errorf("%d Succeeded events for two revisions, want 2", n)
	}
}

// testRenderFailure deploys the app, commits a change that also breaks the
// render (files), and checks that nothing of it is applied or pruned until
// a good commit follows.
func testRenderFailure(t *testing.T, broken map[string]string, wantInMessage string) {
	ns := newNamespace(t, "render")
	_, repo, sha1 := appRepo(t)
	key := create(t, newGitSync(ns, "app", repo.URL, "./app"))
	waitApplied(t, key, mainRev(sha1))

	// The bad commit also scales the Deployment and drops the Service:
	// neither may happen.
	files := map[string]string{
		"app/deployment.yaml": strings.Replace(readFile(t, "testdata/app/deployment.yaml"), "replicas: 1", "replicas: 3", 1),
		"app/service.yaml":    testenv.DeleteFile,
	}
	for k, v := range broken {
		files[k] = v
	}
	sha2 := commit(t, repo, files, nil, "broken")
	gs := waitFailed(t, key, v1alpha1.ReasonRenderFailed, wantInMessage, sha2)
	if gs.Status.LastAppliedRevision != mainRev(sha1) || gs.Status.LastAttemptedRevision != mainRev(sha2) {
		t.Errorf("applied %q, attempted %q; want %q, %q", gs.Status.LastAppliedRevision,
			gs.Status.LastAttemptedRevision, mainRev(sha1), mainRev(sha2))
	}
	if c := findCondition(gs, v1alpha1.StalledCondition); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Stalled = %+v, want True for an error in the repository", c)
	}
	waitEvent(t, key, corev1.EventTypeWarning, v1alpha1.ReasonRenderFailed, wantInMessage)
	// Let a few retries pass: still nothing applied, nothing pruned.
	consistently(t, 4*time.Second, func() error {
		d := deployment(ns, "web")
		if err := get(t, d); err != nil {
			return err
		}
		if *d.Spec.Replicas != 1 {
			return fmt.Errorf("replicas = %d: the broken commit was applied", *d.Spec.Replicas)
		}
		if err := get(t, service(ns, "web")); err != nil {
			return fmt.Errorf("service of the last good commit: %w", err)
		}
		return get(t, configMap(ns, "web-config"))
	})

	// The retries of the same failure (one or two per second here) warn
	// once, not once per retry. (Two are tolerated: a retry that read the
	// GitSync from a cache lagging behind the first failure warns again.)
	if n := countEvents(t, key, corev1.EventTypeWarning, v1alpha1.ReasonRenderFailed); n > 2 {
		t.Errorf("%d RenderFailed warnings for one failure retried for 4s, want 1", n)
	}

	// A good commit recovers.
	sha3 := commit(t, repo, map[string]string{
		"app/configmap.yaml":     readFile(t, "testdata/app/configmap.yaml"),
		"app/kustomization.yaml": kustomization("deployment.yaml", "configmap.yaml"),
	}, nil, "fixed")
	gs = waitApplied(t, key, mainRev(sha3))
	if c := findCondition(gs, v1alpha1.StalledCondition); c != nil {
		t.Errorf("Stalled still set after recovery: %+v", c)
	}
	d := deployment(ns, "web")
	mustExist(t, d)
	if *d.Spec.Replicas != 3 {
		t.Errorf("replicas = %d after the good commit", *d.Spec.Replicas)
	}
	mustBeAbsent(t, service(ns, "web"))
}

func TestBrokenYAMLFailsRenderAndRecovers(t *testing.T) {
	t.Parallel()
	testRenderFailure(t, map[string]string{
		"app/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata: [unclosed\n  greeting: x\n",
	}, "configmap.yaml")
}

func TestKustomizationErrorFailsRenderAndRecovers(t *testing.T) {
	t.Parallel()
	testRenderFailure(t, map[string]string{
		"app/kustomization.yaml": kustomization("deployment.yaml", "configmap.yaml", "missing.yaml"),
	}, "missing.yaml")
}

// countEvents counts the events about key of type and reason, each
// repetition of a series included.
func countEvents(t testing.TB, key types.NamespacedName, typ, reason string) int {
	t.Helper()
	n := 0
	for _, e := range eventsOf(t, key) {
		if e.Type != typ || e.Reason != reason {
			continue
		}
		n++
		if e.Series != nil {
			n += int(e.Series.Count) - 1
		}
	}
	return n
}

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// findCondition is the GitSync's condition of type typ, or nil.
func findCondition(gs *v1alpha1.GitSync, typ string) *metav1.Condition {
	return meta.FindStatusCondition(gs.Status.Conditions, typ)
}

// A GitSync whose render would read outside the repository fails with a
// clear message and writes nothing.
func TestRenderRefusesEscapes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, path string
		files      map[string]string
		want       []string
	}{{
		name: "path-escapes-repo",
		path: "../..",
		want: []string{"escapes the repository root"},
	}, {
		name: "remote-base",
		path: "./remote",
		files: map[string]string{
			"remote/kustomization.yaml": kustomization("configmap.yaml",
				"https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v3.3.1"),
			"remote/configmap.yaml": configMapYAML("remote-config", "", map[string]string{"a": "b"}),
		},
		want: []string{"remote", "https://github.com/kubernetes-sigs/kustomize", "allowRemoteBases"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := newNamespace(t, "escape")
			_, repo, _ := appRepo(t)
			sha := commit(t, repo, tc.files, nil, tc.name)
			key := create(t, newGitSync(ns, "app", repo.URL, tc.path))
			gs := waitFailed(t, key, v1alpha1.ReasonRenderFailed, tc.want...)
			if gs.Status.LastAttemptedRevision != mainRev(sha) || gs.Status.LastAppliedRevision != "" {
				t.Errorf("attempted %q, applied %q", gs.Status.LastAttemptedRevision, gs.Status.LastAppliedRevision)
			}
			if gs.Status.Inventory != nil {
				t.Errorf("inventory = %+v, want none", gs.Status.Inventory)
			}
			mustBeAbsent(t, configMap(ns, "web-config"))
			mustBeAbsent(t, configMap(ns, "remote-config"))
			mustBeAbsent(t, deployment(ns, "web"))
		})
	}
}

// An object aimed outside allowedNamespaces fails the whole sync before
// anything is written.
func TestNamespaceNotAllowedWritesNothing(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "allowed")
	other := newNamespace(t, "other")
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "app")
	sha := commit(t, repo, map[string]string{
		"app/kustomization.yaml": kustomization("deployment.yaml", "configmap.yaml", "service.yaml", "intruder.yaml"),
		"app/intruder.yaml":      configMapYAML("intruder", other, map[string]string{"a": "b"}),
	}, map[string]string{"app": "testdata/app"}, "app with an intruder")
	gs := newGitSync(ns, "app", repo.URL, "./app")
	gs.Spec.AllowedNamespaces = []string{ns}
	key := create(t, gs)

	got := waitFailed(t, key, v1alpha1.ReasonNamespaceDenied, other, "intruder")
	if got.Status.LastAttemptedRevision != mainRev(sha) || got.Status.Inventory != nil {
		t.Errorf("attempted %q, inventory %+v", got.Status.LastAttemptedRevision, got.Status.Inventory)
	}
	waitEvent(t, key, corev1.EventTypeWarning, v1alpha1.ReasonNamespaceDenied, other)
	mustBeAbsent(t, configMap(other, "intruder"))
	mustBeAbsent(t, configMap(ns, "web-config"))
	mustBeAbsent(t, deployment(ns, "web"))
	mustBeAbsent(t, service(ns, "web"))
}

// The loop does not re-apply an unchanged revision; the resync annotation
// forces one full sync and is echoed into the status. With drift mode
// detect, a deletion by hand is reported but left for the resync to fix.
func TestResyncAnnotation(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "resync")
	srv, repo, sha := appRepo(t)
	gs0 := newGitSync(ns, "app", repo.URL, "./app")
	gs0.Spec.Drift.Mode = v1alpha1.DriftDetect
	key := create(t, gs0)
	waitApplied(t, key, mainRev(sha))

	cm := configMap(ns, "web-config")
	if err := k8s.Delete(testContext(t), cm); err != nil {
		t.Fatal(err)
	}
	before := srv.Counts().Repos["app"].Advertisements
	consistently(t, 4*testInterval, func() error { return absent(t, configMap(ns, "web-config")) })
	// The agent did poll meanwhile; it just had nothing to do.
	eventually(t, waitTimeout, func() error {
		if n := srv.Counts().Repos["app"].Advertisements; n < before+2 {
			return fmt.Errorf("%d ref listings since the deletion, want at least 2", n-before)
		}
		return nil
	})
	mustBeAbsent(t, configMap(ns, "web-config"))
	eventually(t, waitTimeout, func() error {
		gs := getGitSync(t, key)
		if !meta.IsStatusConditionTrue(gs.Status.Conditions, v1alpha1.DriftedCondition) || gs.Status.Drift == nil ||
			gs.Status.Drift.Count != 1 || len(gs.Status.Drift.Objects) != 1 || !gs.Status.Drift.Objects[0].Deleted {
			return fmt.Errorf("deletion not reported as drift: %+v %+v", gs.Status.Conditions, gs.Status.Drift)
		}
		return nil
	})

	const at = "2026-05-01T12:00:00Z"
	update(t, key, func(gs *v1alpha1.GitSync) {
		gs.Annotations = map[string]string{v1alpha1.ResyncAnnotation: at}
	})
	eventually(t, waitTimeout, func() error {
		gs := getGitSync(t, key)
		if gs.Status.LastHandledResyncAt != at {
			return fmt.Errorf("lastHandledResyncAt = %q", gs.Status.LastHandledResyncAt)
		}
		return get(t, configMap(ns, "web-config"))
	})
	gs := waitApplied(t, key, mainRev(sha))
	if gs.Status.LastHandledResyncAt != at {
		t.Errorf("lastHandledResyncAt = %q, want %q", gs.Status.LastHandledResyncAt, at)
	}
	if meta.IsStatusConditionTrue(gs.Status.Conditions, v1alpha1.DriftedCondition) || gs.Status.Drift.Count != 0 {
		t.Errorf("drift still reported after the resync: %+v %+v", gs.Status.Conditions, gs.Status.Drift)
	}
}

// checkNoSecret fails when secret appears in the GitSync's status or in
// any event about it.
func checkNoSecret(t *testing.T, key types.NamespacedName, secrets ...string) {
	t.Helper()
	gs := getGitSync(t, key)
	text := statusJSON(t, gs)
	for _, e := range eventsOf(t, key) {
		text += "\n" + e.Note
	}
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("the password %q shows in the status or events:\n%s", s, text)
		}
	}
}

// checkBackoff waits until counter shows a few more attempts (the agent
// retries) and checks that they came slowly (it backs off): a hot loop
// makes dozens between two looks. The bound is loose and only an upper
// one, so a slow machine can never fail it.
func checkBackoff(t *testing.T, what string, counter func() int) {
	t.Helper()
	start, began := counter(), time.Now()
	var n int
	eventually(t, waitTimeout, func() error {
		if n = counter() - start; n < 3 {
			return fmt.Errorf("%s: %d so far", what, n)
		}
		return nil
	})
	// retryInterval 500ms doubling up to the interval, each attempt at
	// most two requests: far below four a second.
	elapsed := time.Since(began)
	if limit := 8 + int(4*elapsed.Seconds()); n > limit {
		t.Errorf("%s: %d in %s, want at most %d", what, n, elapsed.Round(time.Millisecond), limit)
	}
	t.Logf("%s: %d in %s", what, n, elapsed.Round(time.Millisecond))
}

// waitPolls waits until the agent has listed repo name on srv n more
// times: n polls of the GitSyncs that follow it, the agent's own clock.
func waitPolls(t testing.TB, srv *testenv.GitServer, name string, n int) {
	t.Helper()
	start := srv.Counts().Repos[name].Advertisements
	eventually(t, waitTimeout, func() error {
		if got := srv.Counts().Repos[name].Advertisements - start; got < n {
			return fmt.Errorf("%d polls of %s so far, want %d", got, name, n)
		}
		return nil
	})
}
