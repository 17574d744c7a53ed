package sync

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

const (
	gitUser     = "deploy-bot"
	gitPassword = "pw-right-7c1e9a52" // what the host accepts at first
	gitRotated  = "pw-rotated-d04b6f" // what it accepts after a rotation
)

// fetchInterval is the interval of the GitSyncs in the fetch failure tests;
// backoff goes from testRetryInterval up to it.
const fetchInterval = 2 * time.Second

// authApp is a Git server demanding basic auth, a repository holding the
// app, a Secret with the right credentials and a GitSync using it, synced
// once.
type authApp struct {
	ns   string
	srv  *testenv.GitServer
	repo *testenv.GitRepo
	key  types.NamespacedName
	sha  string
}

func newAuthApp(t *testing.T, prefix string) *authApp {
	t.Helper()
	a := &authApp{ns: newNamespace(t, prefix)}
	a.srv = newGitServer(t, testenv.GitServerOptions{Username: gitUser, Password: gitPassword})
	a.repo = newRepo(t, a.srv, "app")
	a.sha = commit(t, a.repo, nil, map[string]string{"app": "testdata/app"}, "app")
	writeSecret(t, a.ns, "git-auth", gitPassword)
	gs := newGitSync(a.ns, "app", a.repo.URL, "./app")
	gs.Spec.Interval = metav1.Duration{Duration: fetchInterval}
	gs.Spec.Source.SecretRef = &v1alpha1.LocalObjectReference{Name: "git-auth"}
	a.key = create(t, gs)
	waitApplied(t, a.key, mainRev(a.sha))
	return a
}

// writeSecret creates or replaces a basic-auth Secret.
func writeSecret(t *testing.T, ns, name, password string) {
	t.Helper()
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		StringData: map[string]string{"username": gitUser, "password": password},
	}
	ctx := testContext(t)
	if err := k8s.Create(ctx, s); err == nil {
		return
	}
	if err := k8s.Update(ctx, s); err != nil {
		t.Fatal(err)
	}
}

// checkKept checks that the objects of the last good sync are all there.
func (a *authApp) checkKept(t *testing.T) {
	t.Helper()
	mustExist(t, configMap(a.ns, "web-config"))
	mustExist(t, deployment(a.ns, "web"))
	mustExist(t, service(a.ns, "web"))
	gs := getGitSync(t, a.key)
	if gs.Status.LastAppliedRevision != mainRev(a.sha) || len(inventoryIDs(gs)) != 3 {
		t.Errorf("after the failure: applied %q, inventory %q", gs.Status.LastAppliedRevision, inventoryIDs(gs))
	}
}

// The host rotates the password: the Secret's is wrong now. Fixing the
// Secret recovers without touching the GitSync.
func TestFetchFailsOnWrongCredentials(t *testing.T) {
	t.Parallel()
	a := newAuthApp(t, "creds")
	a.srv.SetAuth(testenv.GitServerOptions{Username: gitUser, Password: gitRotated})
	sha2 := commit(t, a.repo, map[string]string{
		"app/configmap.yaml": configMapYAML("web-config", "", map[string]string{"greeting": "rotated"}),
	}, nil, "after rotation")

	gs := waitFailed(t, a.key, v1alpha1.ReasonFetchFailed, "authentication failed", a.srv.URL())
	t.Logf("message: %s", readyOf(gs).Message)
	waitEvent(t, a.key, corev1.EventTypeWarning, v1alpha1.ReasonFetchFailed, "authentication failed")
	a.checkKept(t)
	checkBackoff(t, "denied requests", func() int { return a.srv.Counts().Repos["app"].Denied })
	checkNoSecret(t, a.key, gitPassword, gitRotated)
	if n := countEvents(t, a.key, corev1.EventTypeWarning, v1alpha1.ReasonFetchFailed); n != 1 {
		t.Errorf("%d FetchFailed warnings for one failure retried, want 1", n)
	}

	writeSecret(t, a.ns, "git-auth", gitRotated)
	waitApplied(t, a.key, mainRev(sha2))
	cm := configMap(a.ns, "web-config")
	mustExist(t, cm)
	if cm.Data["greeting"] != "rotated" {
		t.Errorf("greeting = %q", cm.Data["greeting"])
	}
	checkNoSecret(t, a.key, gitPassword, gitRotated)
}

// A branch that does not exist (yet) fails the fetch; creating it recovers.
func TestFetchFailsOnMissingBranch(t *testing.T) {
	t.Parallel()
	a := newAuthApp(t, "branch")
	update(t, a.key, func(gs *v1alpha1.GitSync) { gs.Spec.Source.Ref = v1alpha1.GitRef{Branch: "release"} })

	gs := waitFailed(t, a.key, v1alpha1.ReasonFetchFailed, `"release"`, "does not exist")
	t.Logf("message: %s", readyOf(gs).Message)
	a.checkKept(t)
	checkBackoff(t, "ref listings", func() int { return a.srv.Counts().Repos["app"].Advertisements })
	checkNoSecret(t, a.key, gitPassword)
	// A resync asked for now is handled (echoed) although the fetch
	// fails, so whoever waits for it learns of the failure at once.
	update(t, a.key, func(gs *v1alpha1.GitSync) {
		metav1.SetMetaDataAnnotation(&gs.ObjectMeta, v1alpha1.ResyncAnnotation, "while-missing")
	})
	eventually(t, waitTimeout, func() error {
		if got := getGitSync(t, a.key).Status.LastHandledResyncAt; got != "while-missing" {
			return fmt.Errorf("lastHandledResyncAt = %q", got)
		}
		return nil
	})

	if err := a.repo.Branch("release", ""); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, a.key, "release@sha1:"+a.sha)
	a.checkKeptObjects(t)
	checkNoSecret(t, a.key, gitPassword)
}

func (a *authApp) checkKeptObjects(t *testing.T) {
	t.Helper()
	mustExist(t, configMap(a.ns, "web-config"))
	mustExist(t, deployment(a.ns, "web"))
	mustExist(t, service(a.ns, "web"))
}

// A server nobody listens on fails the fetch; pointing back at the real
// one recovers.
func TestFetchFailsOnUnreachableServer(t *testing.T) {
	t.Parallel()
	a := newAuthApp(t, "unreachable")
	dead := "http://" + closedPort(t) + "/app/.git"
	update(t, a.key, func(gs *v1alpha1.GitSync) { gs.Spec.Source.URL = dead })

	gs := waitFailed(t, a.key, v1alpha1.ReasonFetchFailed, strings.TrimPrefix(dead, "http://"))
	msg := readyOf(gs).Message
	t.Logf("message: %s", msg)
	if !strings.Contains(msg, "unreachable") && !strings.Contains(msg, "refused") {
		t.Errorf("message %q does not say the host is unreachable", msg)
	}
	if c := findCondition(gs, v1alpha1.StalledCondition); c != nil {
		t.Errorf("Stalled = %+v for a transient failure", c)
	}
	a.checkKept(t)
	checkNoSecret(t, a.key, gitPassword)

	update(t, a.key, func(gs *v1alpha1.GitSync) { gs.Spec.Source.URL = a.repo.URL })
	waitApplied(t, a.key, mainRev(a.sha))
	a.checkKeptObjects(t)
}

// Two GitSyncs on one repository and ref share one fetch per commit.
func TestOneFetchServesGitSyncsOfOneRef(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "shared")
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "shared")
	files := func(v string) map[string]string {
		return map[string]string{
			"a/cm.yaml": configMapYAML("a", "", map[string]string{"v": v}),
			"b/cm.yaml": configMapYAML("b", "", map[string]string{"v": v}),
		}
	}
	sha1 := commit(t, repo, files("1"), nil, "one")
	ka := create(t, newGitSync(ns, "a", repo.URL, "./a"))
	kb := create(t, newGitSync(ns, "b", repo.URL, "b"))
	waitApplied(t, ka, mainRev(sha1))
	waitApplied(t, kb, mainRev(sha1))

	before := srv.Counts().Repos["shared"]
	sha2 := commit(t, repo, files("2"), nil, "two")
	waitApplied(t, ka, mainRev(sha2))
	waitApplied(t, kb, mainRev(sha2))
	after := srv.Counts().Repos["shared"]
	if n := after.Fetches - before.Fetches; n != 1 {
		t.Errorf("%d fetches for one new commit followed by two GitSyncs, want 1", n)
	}
	t.Logf("listings %d, fetches %d", after.Advertisements-before.Advertisements, after.Fetches-before.Fetches)
	for _, name := range []string{"a", "b"} {
		cm := configMap(ns, name)
		mustExist(t, cm)
		if cm.Data["v"] != "2" {
			t.Errorf("ConfigMap %s: v = %q", name, cm.Data["v"])
		}
	}
}

// A suspended GitSync applies nothing; resuming applies the newest commit.
func TestSuspendAndResume(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "suspend")
	_, repo, sha1 := appRepo(t)
	key := create(t, newGitSync(ns, "app", repo.URL, "./app"))
	waitApplied(t, key, mainRev(sha1))

	update(t, key, func(gs *v1alpha1.GitSync) { gs.Spec.Suspend = true })
	// Wait until the agent's cache holds the suspended spec. A reconcile
	// that read the old one is cancelled by the change (latest wins), and
	// a sync can only begin on the generation the API server holds.
	eventually(t, waitTimeout, func() error {
		gs := &v1alpha1.GitSync{}
		if err := agentCache.Get(testContext(t), key, gs); err != nil {
			return err
		}
		if !gs.Spec.Suspend {
			return fmt.Errorf("agent has not seen the suspension yet")
		}
		return nil
	})
	// Ready says why nothing moves, and keeps the last sync's status.
	eventually(t, waitTimeout, func() error {
		ready := readyOf(getGitSync(t, key))
		if ready == nil || ready.Reason != v1alpha1.ReasonSuspended || ready.Status != metav1.ConditionTrue ||
			!strings.Contains(ready.Message, mainRev(sha1)) {
			return fmt.Errorf("Ready = %+v, want True, reason Suspended, naming %s", ready, mainRev(sha1))
		}
		return nil
	})
	sha2 := commit(t, repo, map[string]string{
		"app/configmap.yaml": configMapYAML("web-config", "", map[string]string{"greeting": "while suspended"}),
	}, nil, "while suspended")
	consistently(t, 4*testInterval, func() error {
		gs := getGitSync(t, key)
		if gs.Status.LastAppliedRevision != mainRev(sha1) || gs.Status.LastAttemptedRevision != mainRev(sha1) {
			return fmt.Errorf("suspended GitSync synced: %s", describe(gs))
		}
		cm := configMap(ns, "web-config")
		if err := get(t, cm); err != nil {
			return err
		}
		if cm.Data["greeting"] != "hello" {
			return fmt.Errorf("suspended GitSync applied greeting %q", cm.Data["greeting"])
		}
		return nil
	})

	update(t, key, func(gs *v1alpha1.GitSync) { gs.Spec.Suspend = false })
	waitApplied(t, key, mainRev(sha2))
	cm := configMap(ns, "web-config")
	mustExist(t, cm)
	if cm.Data["greeting"] != "while suspended" {
		t.Errorf("greeting after resume = %q", cm.Data["greeting"])
	}
}

// Deleting a GitSync with prune deletes what it applied; without prune the
// objects stay.
func TestPruneOnDeletion(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "delete")
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "app")
	sha := commit(t, repo, map[string]string{
		"pruned/kustomization.yaml": kustomization("cm.yaml", "app"),
		"pruned/cm.yaml":            configMapYAML("pruned", "", map[string]string{"a": "b"}),
		"kept/cm.yaml":              configMapYAML("kept", "", map[string]string{"a": "b"}),
	}, map[string]string{"pruned/app": "testdata/app"}, "two folders")
	pruned := create(t, newGitSync(ns, "pruned", repo.URL, "./pruned"))
	gs := newGitSync(ns, "kept", repo.URL, "./kept")
	gs.Spec.Prune = false
	kept := create(t, gs)
	waitApplied(t, pruned, mainRev(sha))
	waitApplied(t, kept, mainRev(sha))
	if got := getGitSync(t, pruned); !slicesContain(got.Finalizers, Finalizer) {
		t.Errorf("finalizers of a pruning GitSync = %q", got.Finalizers)
	}
	if got := getGitSync(t, kept); slicesContain(got.Finalizers, Finalizer) {
		t.Errorf("finalizers of a non-pruning GitSync = %q", got.Finalizers)
	}
	mustExist(t, deployment(ns, "web"))

	deleteGitSync(t, pruned, true)
	deleteGitSync(t, kept, true)
	eventually(t, waitTimeout, func() error {
		for _, o := range []error{
			absent(t, configMap(ns, "pruned")), absent(t, configMap(ns, "web-config")),
			absent(t, deployment(ns, "web")), absent(t, service(ns, "web")),
		} {
			if o != nil {
				return o
			}
		}
		return nil
	})
	mustExist(t, configMap(ns, "kept"))
}

func slicesContain(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
