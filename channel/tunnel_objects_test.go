package channel_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/tunnel"
	"tether.dev/tether/hub/store"
)

// TestTunnelObjects: the agent's objects path answers a GitSync's tracked
// objects with kstatus health computed from the live objects (a
// Deployment no controller has reported on is InProgress; a ConfigMap is
// Current; a Missing one NotFound) and the watch cache's drift, to a
// caller whose granted identity may get the GitSync; one whose identity
// may not, one the ConfigMap does not grant, and a GitSync that does not
// exist are refused, with no object.
func TestTunnelObjects(t *testing.T) {
	var ns string
	tracked := func(gns, name string) ([]tunnel.Tracked, bool) {
		if gns != ns || name != "web" {
			return nil, false
		}
		return []tunnel.Tracked{
			{Group: "apps", Version: "v1", Kind: "Deployment", Resource: "deployments", Namespace: ns, Name: "web", Drift: "InSync"},
			{Version: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespace: ns, Name: "settings", Drift: "Drifted", Paths: []string{"/data/x"}},
			{Version: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespace: ns, Name: "gone", Drift: "Missing"},
		}, true
	}
	r := newTunnelRig(t, rigOptions{objects: tracked})
	ns = r.namespace("objects")
	ctx := context.Background()
	c, err := client.New(controlPlane(t).Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v1alpha1.AddToScheme(c.Scheme())
	owned := map[string]string{v1alpha1.NameLabel: "web", v1alpha1.NamespaceLabel: ns}
	one := int32(1)
	for _, o := range []client.Object{
		&v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
			Spec: v1alpha1.GitSyncSpec{Source: v1alpha1.GitSource{URL: "https://git.example/web.git", Ref: v1alpha1.GitRef{Branch: "main"}}}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Labels: owned}, Spec: appsv1.DeploymentSpec{
			Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1"}}}}}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: ns, Labels: owned}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "get-gitsyncs", Namespace: ns},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"gitsyncs"}, Verbs: []string{"get"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "get-gitsyncs"},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: tunnel.UserPrefix + "alice"}}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	r.setAccess("users:\n- name: alice\n- name: bob\n")
	m, err := r.ch.Tunnel(r.agentName)
	if err != nil {
		t.Fatal(err)
	}
	user := func(name string) *channelpb.TunnelCaller {
		return &channelpb.TunnelCaller{Kind: channelpb.CallerKind_CALLER_KIND_USER, Name: name}
	}

	var got *tunnel.Objects
	eventually(t, "the agent reads tether-access", func() bool {
		got, err = tunnel.GetObjects(ctx, m, user("alice"), ns, "web")
		return err == nil
	})
	if !got.Tracked {
		t.Error("Tracked = false")
	}
	health := map[string]string{}
	drift := map[string]string{}
	for _, o := range got.Items {
		health[o.Kind+"/"+o.Name] = o.Health
		drift[o.Kind+"/"+o.Name] = o.Drift
		if o.Name == "settings" && !cmp.Equal(o.DriftPaths, []string{"/data/x"}) {
			t.Errorf("settings: drift paths %v", o.DriftPaths)
		}
	}
	if diff := cmp.Diff(map[string]string{"Deployment/web": "InProgress", "ConfigMap/settings": "Current", "ConfigMap/gone": "NotFound"}, health); diff != "" {
		t.Errorf("health (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"Deployment/web": "InSync", "ConfigMap/settings": "Drifted", "ConfigMap/gone": "Missing"}, drift); diff != "" {
		t.Errorf("drift (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		caller     *channelpb.TunnelCaller
		name, want string
		code       int
	}{
		{user("bob"), "web", "may not get gitsync", http.StatusForbidden},   // granted, but RBAC says no
		{user("carol"), "web", "not granted", http.StatusForbidden},         // not in tether-access
		{user("alice"), "nothere", "not found", http.StatusNotFound},        // no such GitSync
		{&channelpb.TunnelCaller{}, "web", "unnamed", http.StatusForbidden}, // nobody
	} {
		objs, err := tunnel.GetObjects(ctx, m, tc.caller, ns, tc.name)
		var refused *tunnel.ErrAgentAnswer
		if !errors.As(err, &refused) || refused.Code != tc.code || !contains(refused.Message, tc.want) || objs != nil {
			t.Errorf("%v on %s: %v, %v; want %d %q", tc.caller, tc.name, objs, err, tc.code, tc.want)
		}
	}
	// Through the proxy the agent's own path is no API path.
	if code, body := r.proxyGet(r.token(store.KindAPI, "operator"), tunnel.ObjectsPath(ns, "web"), nil); code != http.StatusNotFound || contains(body, "settings") {
		t.Errorf("objects through the proxy: %d %s", code, body)
	}
}
