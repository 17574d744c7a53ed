package apply

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/fluxcd/pkg/ssa"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/internal/testenv"
)

// k8s is an admin client of the package's control plane; testManager
// applies through it. testConfig is its rest config, for tests that need
// a client of their own.
var (
	k8s         client.Client
	testManager *Manager
	testConfig  *rest.Config
)

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, testenv.ControlPlaneOptions{}, func(cp *testenv.ControlPlane) (func() error, error) {
		testConfig = cp.Config
		var err error
		if k8s, err = client.New(cp.Config, client.Options{}); err != nil {
			return nil, err
		}
		disco, err := discovery.NewDiscoveryClientForConfig(cp.Config)
		if err != nil {
			return nil, err
		}
		testManager = NewManager(k8s, ManagerOptions{Discovery: disco})
		return nil, nil
	}))
}

func testContext(tb testing.TB) context.Context { return testenv.Context(tb, 2*time.Minute) }

// newNamespace creates a namespace of the test's own.
func newNamespace(tb testing.TB) string { return testenv.NewNamespace(tb, k8s, "apply") }

// readObjects reads a YAML fixture from testdata/, replacing ${KEY} with
// vars[KEY].
func readObjects(tb testing.TB, name string, vars map[string]string) []*unstructured.Unstructured {
	tb.Helper()
	objs, err := testenv.ReadObjects("testdata/"+name, vars)
	if err != nil {
		tb.Fatal(err)
	}
	return objs
}

// configMap builds a ConfigMap; an empty namespace leaves it to Plan.
func configMap(namespace, name string, data map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap"}}
	u.SetNamespace(namespace)
	u.SetName(name)
	d := make(map[string]any, len(data))
	for k, v := range data {
		d[k] = v
	}
	u.Object["data"] = d
	return u
}

// planAndApply plans objs for owner in ns and applies them.
func planAndApply(tb testing.TB, objs []*unstructured.Unstructured, opts Options) *Result {
	tb.Helper()
	ctx := testContext(tb)
	plan, err := testManager.Plan(ctx, objs, opts)
	if err != nil {
		tb.Fatalf("plan: %v", err)
	}
	res, err := testManager.Apply(ctx, plan)
	if err != nil {
		tb.Fatalf("apply: %v", err)
	}
	return res
}

// actions maps each change-set subject to its action, for cmp.
func actions(cs *ssa.ChangeSet) map[string]string {
	out := make(map[string]string, len(cs.Entries))
	for _, e := range cs.Entries {
		out[e.Subject] = string(e.Action)
	}
	return out
}

func clientKey(o client.Object) client.ObjectKey { return client.ObjectKeyFromObject(o) }

func objectMeta(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name}
}
