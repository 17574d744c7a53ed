package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// The package's end-to-end tests share one control plane and one agent: a
// controller-runtime manager running the real Reconciler, wired the way
// cmd/tether's runAgent wires it (real Fetcher, kustomize renderer, ssa
// applier on a direct client, the manager's event recorder, no leader
// election). Tests only commit to real Git repositories and write GitSyncs;
// the agent finds every commit by polling.
//
// Set TETHER_TEST_LOG=1 to see the agent's log on stderr.

// Timing of every GitSync the tests create, and of the agent's source.
const (
	testInterval      = time.Second
	testRetryInterval = 500 * time.Millisecond
	testResolveTTL    = 200 * time.Millisecond
	// waitTimeout is how long a test waits for the agent. It is generous:
	// the machine is shared and slow, and a test must never fail on timing
	// when the behaviour is right.
	waitTimeout = 60 * time.Second
	// testAgentNamespace is the test agent's own namespace (--namespace):
	// the only one whose GitSyncs apply with the agent's rights.
	testAgentNamespace = "tether-system"
)

var (
	// k8s is a direct (uncached) admin client of the control plane.
	k8s client.Client
	// agentCache is the agent manager's cached client: what the Reconciler
	// sees.
	agentCache client.Client
	// adminConfig is the control plane's admin config, for tests that act
	// as another user (impersonation).
	adminConfig *rest.Config
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	// kube-controller-manager fills in Deployment, ReplicaSet and pod
	// status for the health tests (spec.wait); without a kubelet pods stay
	// Pending unless a test sets their status as a kubelet would.
	cp, err := testenv.StartControlPlane(testenv.ControlPlaneOptions{ControllerManager: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	adminConfig = rest.CopyConfig(cp.Config)
	stop, err := startAgent(cp)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return code
}

func testScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// startAgent starts the manager and the Reconciler as runAgent does and
// returns a function that stops them.
func startAgent(cp *testenv.ControlPlane) (func() error, error) {
	log := logr.Discard()
	slogger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("TETHER_TEST_LOG") != "" {
		log = funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{Verbosity: 1})
		slogger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctrl.SetLogger(log)
	scheme := testScheme()
	// runAgent's default client rate limits.
	cfg := rest.CopyConfig(cp.Config)
	cfg.QPS, cfg.Burst = 100, 300
	// Every request the agent makes passes agentRequests.
	cfg.Wrap(agentRequests.wrap)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:         scheme,
		Logger:         log,
		LeaderElection: false,
		Metrics:        metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		return nil, fmt.Errorf("manager: %w", err)
	}
	direct, err := client.New(cfg, client.Options{Scheme: scheme, Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return nil, err
	}
	k8s = direct
	agentCache = mgr.GetClient()
	cacheDir, err := os.MkdirTemp("", "tether-sync-test-")
	if err != nil {
		return nil, err
	}
	if _, err := New(mgr, cfg, Options{
		CacheDir: cacheDir, ResolveTTL: testResolveTTL, Concurrency: 4, Logger: slogger,
		AgentNamespace: testAgentNamespace, DefaultServiceAccount: testenv.DeployerAccount,
	}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	syncCtx, syncCancel := context.WithTimeout(ctx, time.Minute)
	defer syncCancel()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		cancel()
		return nil, errors.Join(errors.New("agent cache did not sync"), <-done)
	}
	return func() error {
		cancel()
		defer os.RemoveAll(cacheDir)
		select {
		case err := <-done:
			return err
		case <-time.After(time.Minute):
			return errors.New("agent did not stop within a minute")
		}
	}, nil
}

// testContext is bounded so that a stuck call fails the test rather than
// hanging the package.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// eventually calls fn until it returns nil or timeout passes, then fails
// the test with fn's last error.
func eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// consistently calls fn every 200ms for d and fails the test at its first
// error.
func consistently(t testing.TB, d time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := fn(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// newNamespace makes a namespace of the test's own whose GitSyncs apply as
// its testenv.DeployerAccount, bound to cluster-admin: a namespace the
// platform team trusts with the whole cluster.
func newNamespace(t testing.TB, prefix string) string {
	t.Helper()
	ns := newTenantNamespace(t, prefix)
	revoke, err := testenv.GrantDeployer(testContext(t), k8s, ns, "cluster-admin", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := revoke(context.Background()); err != nil {
			t.Log(err)
		}
	})
	return ns
}

// newTenantNamespace makes a namespace whose GitSyncs' default account does
// not exist until the test grants it something.
func newTenantNamespace(t testing.TB, prefix string) string {
	t.Helper()
	ns, err := testenv.CreateNamespace(testContext(t), k8s, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// newGitServer serves a fresh folder on 127.0.0.1 until the test ends.
func newGitServer(t testing.TB, opts testenv.GitServerOptions) *testenv.GitServer {
	t.Helper()
	srv, err := testenv.StartGitServer(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Log(err)
		}
	})
	return srv
}

func newRepo(t testing.TB, srv *testenv.GitServer, name string) *testenv.GitRepo {
	t.Helper()
	repo, err := srv.CreateRepo(name)
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// commit writes files (testenv.DeleteFile removes one), after copying the
// folders in dirs (repository path -> local folder), and commits.
func commit(t testing.TB, repo *testenv.GitRepo, files map[string]string, dirs map[string]string, msg string) string {
	t.Helper()
	for dst, src := range dirs {
		if err := repo.CopyDir(src, dst); err != nil {
			t.Fatal(err)
		}
	}
	sha, err := repo.Commit(files, msg)
	if err != nil {
		t.Fatal(err)
	}
	return sha
}

// appRepo makes a server and a repository whose first commit holds
// testdata/app at app/.
func appRepo(t testing.TB) (*testenv.GitServer, *testenv.GitRepo, string) {
	t.Helper()
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "app")
	sha := commit(t, repo, nil, map[string]string{"app": "testdata/app"}, "app")
	return srv, repo, sha
}

func mainRev(sha string) string { return "main@sha1:" + sha }

// newGitSync returns a GitSync of path in repoURL (branch main) with the
// tests' short intervals and prune on.
func newGitSync(ns, name, repoURL, path string) *v1alpha1.GitSync {
	return &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.GitSyncSpec{
			Source:        v1alpha1.GitSource{URL: repoURL, Ref: v1alpha1.GitRef{Branch: "main"}},
			Path:          path,
			Interval:      metav1.Duration{Duration: testInterval},
			RetryInterval: &metav1.Duration{Duration: testRetryInterval},
			Prune:         true,
		},
	}
}

// create creates gs and, when the test ends, deletes it and waits (a
// while) until the agent has let it go, so that finished tests stop
// polling.
func create(t testing.TB, gs *v1alpha1.GitSync) types.NamespacedName {
	t.Helper()
	if err := k8s.Create(testContext(t), gs); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(gs)
	t.Cleanup(func() { deleteGitSync(t, key, false) })
	return key
}

// deleteGitSync deletes the GitSync key and waits until it is gone; a
// timeout fails the test only when must is set.
func deleteGitSync(t testing.TB, key types.NamespacedName, must bool) {
	t.Helper()
	ctx := testContext(t)
	gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	if err := k8s.Delete(ctx, gs); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("delete GitSync %s: %v", key, err)
		return
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		err := k8s.Get(ctx, key, &v1alpha1.GitSync{})
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			if must {
				t.Fatalf("GitSync %s still there %s after its deletion (err=%v)", key, waitTimeout, err)
			}
			t.Logf("GitSync %s still there after its deletion (err=%v)", key, err)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func getGitSync(t testing.TB, key types.NamespacedName) *v1alpha1.GitSync {
	t.Helper()
	gs := &v1alpha1.GitSync{}
	if err := k8s.Get(testContext(t), key, gs); err != nil {
		t.Fatal(err)
	}
	return gs
}

// update changes the GitSync's metadata or spec with a merge patch.
func update(t testing.TB, key types.NamespacedName, mutate func(gs *v1alpha1.GitSync)) {
	t.Helper()
	gs := getGitSync(t, key)
	patch := client.MergeFrom(gs.DeepCopy())
	mutate(gs)
	if err := k8s.Patch(testContext(t), gs, patch); err != nil {
		t.Fatal(err)
	}
}

func readyOf(gs *v1alpha1.GitSync) *metav1.Condition {
	return meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition)
}

func describe(gs *v1alpha1.GitSync) string {
	c := readyOf(gs)
	if c == nil {
		return fmt.Sprintf("generation %d, observed %d, no Ready condition", gs.Generation, gs.Status.ObservedGeneration)
	}
	return fmt.Sprintf("generation %d, observed %d, Ready=%s %s: %q, applied %q, attempted %q",
		gs.Generation, gs.Status.ObservedGeneration, c.Status, c.Reason, c.Message,
		gs.Status.LastAppliedRevision, gs.Status.LastAttemptedRevision)
}

// waitApplied waits until the GitSync is Ready at revision rev for its
// current generation and returns it.
func waitApplied(t testing.TB, key types.NamespacedName, rev string) *v1alpha1.GitSync {
	t.Helper()
	return waitGitSync(t, key, func(gs *v1alpha1.GitSync) error {
		c := readyOf(gs)
		if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != gs.Generation ||
			gs.Status.ObservedGeneration != gs.Generation || gs.Status.LastAppliedRevision != rev {
			return fmt.Errorf("GitSync %s not applied at %s: %s", key, rev, describe(gs))
		}
		return nil
	})
}

// waitFailed waits until the GitSync's Ready condition is False with
// reason for its current generation, and its message holds every string
// of want.
func waitFailed(t testing.TB, key types.NamespacedName, reason string, want ...string) *v1alpha1.GitSync {
	t.Helper()
	return waitGitSync(t, key, func(gs *v1alpha1.GitSync) error {
		c := readyOf(gs)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != reason || c.ObservedGeneration != gs.Generation {
			return fmt.Errorf("GitSync %s has not failed with %s: %s", key, reason, describe(gs))
		}
		return mentions(key, c, want)
	})
}

// waitGitSync reads the GitSync until check accepts it, and returns it.
func waitGitSync(t testing.TB, key types.NamespacedName, check func(*v1alpha1.GitSync) error) *v1alpha1.GitSync {
	t.Helper()
	var gs *v1alpha1.GitSync
	eventually(t, waitTimeout, func() error {
		gs = &v1alpha1.GitSync{}
		if err := k8s.Get(testContext(t), key, gs); err != nil {
			return err
		}
		return check(gs)
	})
	return gs
}

// mentions says which of want the condition's message lacks, if any.
func mentions(key types.NamespacedName, c *metav1.Condition, want []string) error {
	for _, w := range want {
		if !strings.Contains(c.Message, w) {
			return fmt.Errorf("GitSync %s: %s message %q does not mention %q", key, c.Type, c.Message, w)
		}
	}
	return nil
}

// get reads obj (its namespace and name set) from the cluster.
func get(t testing.TB, obj client.Object) error {
	t.Helper()
	return k8s.Get(testContext(t), client.ObjectKeyFromObject(obj), obj)
}

func mustExist(t testing.TB, obj client.Object) {
	t.Helper()
	if err := get(t, obj); err != nil {
		t.Fatalf("%T %s/%s: %v", obj, obj.GetNamespace(), obj.GetName(), err)
	}
}

func mustBeAbsent(t testing.TB, obj client.Object) {
	t.Helper()
	if err := absent(t, obj); err != nil {
		t.Fatal(err)
	}
}

func absent(t testing.TB, obj client.Object) error {
	t.Helper()
	err := get(t, obj)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case obj.GetDeletionTimestamp() != nil:
		return nil // being deleted
	}
	return fmt.Errorf("%T %s/%s exists", obj, obj.GetNamespace(), obj.GetName())
}

func configMap(ns, name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func deployment(ns, name string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func service(ns, name string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

// eventsOf lists the events.k8s.io/v1 Events about the GitSync key (the
// manager's recorder writes that API).
func eventsOf(t testing.TB, key types.NamespacedName) []eventsv1.Event {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := k8s.List(testContext(t), list, client.InNamespace(key.Namespace)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "GitSync" && e.Regarding.Name == key.Name {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits for an event about key with reason whose note holds
// every string of want.
func waitEvent(t testing.TB, key types.NamespacedName, typ, reason string, want ...string) eventsv1.Event {
	t.Helper()
	var found eventsv1.Event
	eventually(t, waitTimeout, func() error {
		var notes []string
	next:
		for _, e := range eventsOf(t, key) {
			notes = append(notes, e.Reason+": "+e.Note)
			if e.Type != typ || e.Reason != reason {
				continue
			}
			for _, w := range want {
				if !strings.Contains(e.Note, w) {
					continue next
				}
			}
			found = e
			return nil
		}
		return fmt.Errorf("no %s event %s about %s mentions %q; events: %q", typ, reason, key, want, notes)
	})
	return found
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// statusJSON is the GitSync's whole status as text, to search for secrets.
func statusJSON(t testing.TB, gs *v1alpha1.GitSync) string {
	t.Helper()
	b, err := json.Marshal(gs.Status)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// examplesDir is the repository's examples folder.
var examplesDir = filepath.Join("..", "examples")
