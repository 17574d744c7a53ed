package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/channel/tunnel"
	"tether.dev/tether/channel/tunnel/measure"
)

// The tunnel part's namespaces: the agent's own (holding tether-access)
// and the one read through the tunnel.
const (
	tunnelAgentNS = "tether-bench-tunnel"
	tunnelNS      = "bench-tunnel"
	tunnelUser    = "alice"
	tunnelWatches = 100
)

// benchTunnel measures the hub's Kubernetes API tunnel with the real hub
// and agent processes (channel/tunnel/measure, the code of the channel
// package's benchmarks): a `kubectl get`-sized request and a list of
// 1,000 ConfigMaps through the tunnel and straight to the API server as
// the same impersonated identity, alternately; the hub's heap per open
// tunnelled watch and the agent's heap with 100 open at once.
func (e *env) benchTunnel(ctx context.Context, o options) ([]row, error) {
	h, err := e.ensureHub(ctx)
	if err != nil {
		return nil, err
	}
	step("tunnel: 1,001 ConfigMaps, access for user %s", tunnelUser)
	if err := e.tunnelFixtures(ctx); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, e.tether, "hub", "token", "create", "--db", filepath.Join(e.work, "hub.db"),
		"--user", tunnelUser, "--actions", "read,proxy").Output()
	if err != nil {
		return nil, fmt.Errorf("tunnel: hub token create: %w", err)
	}
	token := strings.TrimSpace(string(out))
	metrics, err := freeAddr()
	if err != nil {
		return nil, err
	}
	agent, err := e.startAgent(ctx, "tunnel", append(h.agentArgs(), "--namespace", tunnelAgentNS, "--metrics-addr", metrics)...)
	if err != nil {
		return nil, err
	}
	defer agent.stop()
	c, err := measure.New(measure.Options{
		ProxyURL: h.url + "/k8s-proxy/bench", Token: token, Direct: e.cp.Config,
		User: tunnel.UserPrefix + tunnelUser, Groups: []string{tunnel.UsersGroup},
	})
	if err != nil {
		return nil, err
	}
	get := "/api/v1/namespaces/" + tunnelNS + "/configmaps/app"
	list := "/api/v1/namespaces/" + tunnelNS + "/configmaps"
	if err := pollEvery10ms(time.Minute, func() bool { _, err := c.Get(ctx, true, get); return err == nil }); err != nil {
		return nil, fmt.Errorf("tunnel: the agent never served %s: %w", get, err)
	}
	gets, lists := 200, 20
	if o.quick {
		gets, lists = 50, 5
	}
	step("tunnel: %d gets and %d lists of 1,000 each way", gets, lists)
	gt, gd, err := c.Alternate(ctx, get, 50, gets)
	if err != nil {
		return nil, err
	}
	size, err := c.Get(ctx, true, list)
	if err != nil {
		return nil, err
	}
	lt, ld, err := c.Alternate(ctx, list, 3, lists)
	if err != nil {
		return nil, err
	}
	step("tunnel: %d watches open through the tunnel", tunnelWatches)
	hubHeap := func() (int64, error) { return measure.HeapFromMetrics(ctx, h.url+"/metrics", token) }
	agentHeap := func() (int64, error) { return measure.HeapFromMetrics(ctx, "http://"+metrics+"/metrics", "") }
	mem, err := c.Watches(ctx, list+"?watch=true", tunnelWatches, hubHeap, agentHeap, false)
	if err != nil {
		return nil, err
	}

	t50, d50 := measure.Percentile(gt, 0.5), measure.Percentile(gd, 0.5)
	overhead := t50 - d50
	lt50, ld50 := measure.Percentile(lt, 0.5), measure.Percentile(ld, 0.5)
	listRatio := float64(lt50) / float64(ld50)
	return []row{
		{what: "kubectl get through the tunnel (one ConfigMap), p50", tether: round(t50), kubectl: round(d50) + " direct",
			ratio:  fmt.Sprintf("%.2f×", float64(t50)/float64(d50)),
			target: fmt.Sprintf("p50 overhead < 5 ms: %s (%s)", verdict(overhead < 5*time.Millisecond), round(overhead)),
			note:   fmt.Sprintf("%d requests each way, alternately; direct = the same path straight to the API server, impersonating as the agent does; hub and agent are separate processes", gets)},
		{what: "kubectl get through the tunnel (one ConfigMap), p95", tether: round(measure.Percentile(gt, 0.95)),
			kubectl: round(measure.Percentile(gd, 0.95)) + " direct", note: "same run"},
		{what: "list of 1,000 ConfigMaps through the tunnel, p50", tether: round(lt50), kubectl: round(ld50) + " direct",
			ratio: fmt.Sprintf("%.2f×", listRatio), target: "≤ 1.5× direct: " + verdict(listRatio <= 1.5),
			note: fmt.Sprintf("%d lists each way, %d KiB of JSON each", lists, size>>10)},
		{what: "hub heap per open tunnelled watch", tether: fmt.Sprintf("%.1f KiB", mem.HubPerWatch/1024),
			note: fmt.Sprintf("%d watches of a namespace's ConfigMaps open at once; the hub's go_memstats_heap_inuse_bytes before and with them, no GC forced (an upper bound; the channel benchmark's in-process figure forces GC)", tunnelWatches)},
		{what: "agent heap with 100 concurrent proxied requests", tether: mib(mem.AgentWith),
			note: fmt.Sprintf("the same %d open watches; %.1f KiB each over the idle agent", tunnelWatches, mem.AgentPerRequest/1024)},
	}, nil
}

// tunnelFixtures makes what the tunnel part reads: ConfigMap app and 1,000
// more in tunnelNS, a role that lets the tunnel's user read them, and the
// agent's tether-access granting that user.
func (e *env) tunnelFixtures(ctx context.Context) error {
	if err := e.k.namespaces(ctx, tunnelAgentNS, tunnelNS); err != nil {
		return err
	}
	objs := []*corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: tunnelNS}, Data: map[string]string{"v": strings.Repeat("x", 512)}}}
	for i := range 1000 {
		objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%04d", i), Namespace: tunnelNS},
			Data: map[string]string{"v": strings.Repeat("x", 512)}})
	}
	objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: tunnel.AccessConfigMap, Namespace: tunnelAgentNS},
		Data: map[string]string{tunnel.AccessKey: "users:\n- name: " + tunnelUser + "\n"}})
	for _, cm := range objs {
		if err := e.k.c.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("configmap %s/%s: %w", cm.Namespace, cm.Name, err)
		}
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read-configmaps", Namespace: tunnelNS},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}}}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "read-configmaps", Namespace: tunnelNS},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: tunnel.UserPrefix + tunnelUser}}}
	if err := e.k.c.Create(ctx, role); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("role %s/%s: %w", tunnelNS, role.Name, err)
	}
	if err := e.k.c.Create(ctx, rb); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("rolebinding %s/%s: %w", tunnelNS, rb.Name, err)
	}
	return nil
}
