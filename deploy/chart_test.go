package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"tether.dev/tether/api/v1alpha1"
)

// helmEnv names the helm binary `make test-helm` builds from the module
// proxy at the version pinned in internal/helmtool.
const helmEnv = "TETHER_TEST_HELM"

const chartDir = "chart/tether"

// helm runs the helm binary and returns its stdout, or its stderr as error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := os.Getenv(helmEnv)
	if bin == "" {
		t.Fatalf("%s is not set: run `make test-helm` to build helm, or point it at a helm binary", helmEnv)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	// No repositories, plugins or cache of the user's: only this chart.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &helmError{err: err, stderr: stderr.String()}
	}
	return stdout.String(), nil
}

type helmError struct {
	err    error
	stderr string
}

func (e *helmError) Error() string { return e.err.Error() + ": " + e.stderr }

// connectedValues turn on every template: the hub, and the agent connected
// to it.
var connectedValues = []string{"--set", "hub.enabled=true,hub.webhookSecret.name=tether-hub,hub.externalURL=https://hub.example.com," +
	"agent.hub.url=https://hub.example.com,agent.hub.agentName=prod-eu,agent.leaderElection=false,agent.replicas=2"}

// TestChartCRDMatchesAPI keeps the chart's CRD in step with the generated one.
func TestChartCRDMatchesAPI(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "crds", "tether.dev_gitsyncs.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, v1alpha1.CRDYAML) {
		t.Fatal("deploy/chart/tether/crds differs from api/v1alpha1/crd: run `make generate`")
	}
}

// TestHelmChart lints and renders the chart with helm, with the defaults and
// with every template on, and applies the rendering to a real API server.
func TestHelmChart(t *testing.T) {
	for _, values := range [][]string{nil, connectedValues} {
		if out, err := helm(t, append([]string{"lint", "--strict", chartDir}, values...)...); err != nil {
			t.Fatalf("helm lint %v: %v\n%s", values, err, out)
		}
	}
	for _, tc := range []struct{ set, want string }{
		{"agent.hub.url=https://hub.example.com", "agent.hub.agentName is required with agent.hub.url"},
		{"hub.enabled=true,hub.replicas=2", "hub.replicas must be 1"},
	} {
		if _, err := helm(t, "template", "tether", chartDir, "--set", tc.set); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("helm template --set %s: %v, want an error with %q", tc.set, err, tc.want)
		}
	}
	defaults, err := helm(t, "template", "tether", chartDir, "--namespace", "tether-system", "--include-crds")
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	rendered, err := helm(t, append([]string{"template", "tether", chartDir, "--namespace", "tether-system", "--include-crds"}, connectedValues...)...)
	if err != nil {
		t.Fatalf("helm template (connected, hub): %v", err)
	}
	objs := decode(t, rendered)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetKind()]++
	}
	want := map[string]int{"CustomResourceDefinition": 1, "ServiceAccount": 1, "ClusterRoleBinding": 1, "ClusterRole": 2, "Deployment": 2, "Service": 2, "PersistentVolumeClaim": 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("chart renders %d %s, want %d (all: %v)", kinds[k], k, n, kinds)
		}
	}
	if d := decode(t, defaults); len(d) != len(objs)-3 {
		t.Errorf("defaults render %d objects, want %d (no hub)", len(d), len(objs)-3)
	}

	agent := &appsv1.Deployment{}
	fromObjects(t, objs, "Deployment", "tether-agent", agent)
	args := agent.Spec.Template.Spec.Containers[0].Args
	for _, a := range []string{"--hub-url=https://hub.example.com", "--agent-name=prod-eu", "--token-file=/var/run/tether/hub/token", "--leader-elect=false", "--default-service-account=tether-deployer"} {
		if !slices.Contains(args, a) {
			t.Errorf("agent args %q lack %q", args, a)
		}
	}
	if *agent.Spec.Replicas != 2 || !strings.HasPrefix(agent.Spec.Template.Spec.Containers[0].Image, "ghcr.io/tether-dev/tether:") {
		t.Errorf("agent replicas %d, image %q", *agent.Spec.Replicas, agent.Spec.Template.Spec.Containers[0].Image)
	}
	svc := &corev1.Service{}
	fromObjects(t, objs, "Service", "tether-agent", svc)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" {
		t.Errorf("agent Service ports %+v, want one named metrics", svc.Spec.Ports)
	}

	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// helm install --namespace expects the namespace to exist.
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tether-system"}}); err != nil {
		t.Fatal(err)
	}
	applyAll(ctx, t, c, objs, "helm", "the chart")
	live := &appsv1.Deployment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "tether-system", Name: "tether-hub"}, live); err != nil {
		t.Fatalf("the hub Deployment is not in the cluster: %v", err)
	}
}

// decode splits helm's multi-document output into objects.
func decode(t *testing.T, s string) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(s)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		o := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &o.Object); err != nil {
			t.Fatalf("helm template printed bad YAML: %v\n%s", err, doc)
		}
		if len(o.Object) > 0 {
			objs = append(objs, o)
		}
	}
}

func fromObjects(t *testing.T, objs []*unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("the chart renders no %s %s", kind, name)
}
