package apply

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// requestCounter counts the API requests that reach a path containing
// match, by kind of request: "apply", "dry-run", "get", "list" or the
// method.
type requestCounter struct {
	match string
	mu    sync.Mutex
	n     map[string]int
	// inFlight and maxInFlight count apply requests under way.
	inFlight, maxInFlight int
}

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if strings.Contains(r.URL.Path, c.match) {
			kind := r.Method
			switch {
			case r.Method == http.MethodPatch && r.URL.Query().Has("dryRun"):
				kind = "dry-run"
			case r.Method == http.MethodPatch:
				kind = "apply"
			case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, c.match):
				kind = "list"
			case r.Method == http.MethodGet:
				kind = "get"
			}
			c.mu.Lock()
			c.n[kind]++
			if kind == "apply" {
				c.inFlight++
				c.maxInFlight = max(c.maxInFlight, c.inFlight)
				defer func() {
					c.mu.Lock()
					c.inFlight--
					c.mu.Unlock()
				}()
			}
			c.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

func (c *requestCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.n
	c.n = map[string]int{}
	return out
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// countingManager is a Manager whose requests to ConfigMaps of ns are
// counted; cfg may set impersonation.
func countingManager(t *testing.T, cfg *rest.Config, ns string, opts ManagerOptions) (*Manager, *requestCounter) {
	t.Helper()
	counter := &requestCounter{match: "/namespaces/" + ns + "/configmaps", n: map[string]int{}}
	cfg = rest.CopyConfig(cfg)
	cfg.WrapTransport = counter.wrap
	c, err := client.New(cfg, client.Options{Mapper: k8s.RESTMapper()})
	if err != nil {
		t.Fatal(err)
	}
	return NewManager(c, opts), counter
}

func configMaps(n int) []*unstructured.Unstructured {
	objs := make([]*unstructured.Unstructured, n)
	for i := range objs {
		objs[i] = configMap("", fmt.Sprintf("cm-%02d", i), map[string]string{"index": fmt.Sprint(i)})
	}
	return objs
}

// sameAction is what every ConfigMap of configMaps(n) in ns should get.
func sameAction(ns string, n int, action string) map[string]string {
	out := make(map[string]string, n)
	for i := range n {
		out[fmt.Sprintf("ConfigMap/%s/cm-%02d", ns, i)] = action
	}
	return out
}

// applyCounted plans and applies configMaps(n) with m and returns the
// plan, the result and the requests counted during Apply alone.
func applyCounted(t *testing.T, m *Manager, counter *requestCounter, n int, opts Options) (*Plan, *Result, map[string]int) {
	t.Helper()
	ctx := testContext(t)
	plan, err := m.Plan(ctx, configMaps(n), opts)
	if err != nil {
		t.Fatal(err)
	}
	counter.take()
	res, err := m.Apply(ctx, plan)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return plan, res, counter.take()
}

// TestApplyOneRequestPerObject: objects the cluster does not have are
// applied with one request each (after one LIST of their kind and
// namespace), with no dry-run; applied again unchanged, the same; the
// actions and live resourceVersions are right both times, and no more
// than ManagerOptions.ObjectConcurrency applies run at once.
func TestApplyOneRequestPerObject(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	m, counter := countingManager(t, testConfig, ns, ManagerOptions{ObjectConcurrency: 3})
	const n = 12
	opts := Options{Owner: Owner{Name: "app", Namespace: ns}}

	wantRequests := map[string]int{"list": 1, "apply": n}
	for i, action := range []string{"created", "unchanged"} {
		plan, res, got := applyCounted(t, m, counter, n, opts)
		if diff := cmp.Diff(wantRequests, got); diff != "" {
			t.Errorf("apply #%d: requests (-want +got):\n%s", i+1, diff)
		}
		if counter.maxInFlight > 3 {
			t.Errorf("apply #%d: %d applies at once, want at most ObjectConcurrency (3)", i+1, counter.maxInFlight)
		}
		if diff := cmp.Diff(sameAction(ns, n, action), actions(res.ChangeSet)); diff != "" {
			t.Errorf("apply #%d: actions (-want +got):\n%s", i+1, diff)
		}
		if res.Changed != (action == "created") {
			t.Errorf("apply #%d: Changed = %v", i+1, res.Changed)
		}
		if len(res.Live) != n {
			t.Errorf("apply #%d: %d live versions, want %d", i+1, len(res.Live), n)
		}
		for _, o := range plan.Objects {
			live := &unstructured.Unstructured{}
			live.SetGroupVersionKind(o.GroupVersionKind())
			if err := k8s.Get(ctx, clientKey(o), live); err != nil {
				t.Fatal(err)
			}
			if id := object.UnstructuredToObjMetadata(o).String(); res.Live[id] != live.GetResourceVersion() {
				t.Errorf("apply #%d: Live[%s] = %q, cluster has %q", i+1, id, res.Live[id], live.GetResourceVersion())
			}
		}
	}
}

// TestApplyWithoutListPermission: an applier that may get and patch but not
// list (an impersonated service account with a narrow Role) still tells
// created from unchanged, reading each object instead.
func TestApplyWithoutListPermission(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t)
	role := &rbacv1.Role{}
	role.Namespace, role.Name = ns, "get-patch"
	role.Rules = []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "patch", "create"}}}
	binding := &rbacv1.RoleBinding{
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "narrow"}},
	}
	binding.Namespace, binding.Name = ns, "narrow"
	for _, o := range []client.Object{role, binding} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(testConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "narrow"}
	m, counter := countingManager(t, cfg, ns, ManagerOptions{})
	const n = 3
	opts := Options{Owner: Owner{Name: "app", Namespace: ns}}
	for i, action := range []string{"created", "unchanged"} {
		_, res, got := applyCounted(t, m, counter, n, opts)
		if diff := cmp.Diff(sameAction(ns, n, action), actions(res.ChangeSet)); diff != "" {
			t.Errorf("apply #%d: actions (-want +got):\n%s", i+1, diff)
		}
		if got["get"] != n || got["apply"] != n || got["dry-run"] != 0 {
			t.Errorf("apply #%d: requests %v, want %d gets and %d applies after a refused list", i+1, got, n, n)
		}
	}
}

// TestApplySkip: objects Options.Skip accepts are reported unchanged and
// cost no request at all; the others are applied as usual. Skipping every
// object makes no request.
func TestApplySkip(t *testing.T) {
	ns := newNamespace(t)
	m, counter := countingManager(t, testConfig, ns, ManagerOptions{})
	const n = 6
	opts := Options{Owner: Owner{Name: "app", Namespace: ns}}
	applyCounted(t, m, counter, n, opts)

	opts.Skip = func(*unstructured.Unstructured) bool { return true }
	_, res, got := applyCounted(t, m, counter, n, opts)
	if len(got) != 0 {
		t.Errorf("requests with every object skipped: %v, want none", got)
	}
	if diff := cmp.Diff(sameAction(ns, n, "unchanged"), actions(res.ChangeSet)); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	if len(res.Live) != 0 {
		t.Errorf("Live = %v, want no version for skipped objects", res.Live)
	}

	opts.Skip = func(o *unstructured.Unstructured) bool { return o.GetName() != "cm-00" }
	_, res, got = applyCounted(t, m, counter, n, opts)
	if diff := cmp.Diff(map[string]int{"get": 1, "apply": 1}, got); diff != "" {
		t.Errorf("requests with one object sent (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(sameAction(ns, n, "unchanged"), actions(res.ChangeSet)); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	if len(res.Live) != 1 {
		t.Errorf("Live = %v, want the one object sent", res.Live)
	}
}
