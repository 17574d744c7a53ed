package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// TestAgentRefusesTenantWithoutAccount runs `tether agent` as a new install
// without --default-service-account: a GitSync in a tenant namespace that
// names no service account is Stalled (ServiceAccountRequired) and applies
// nothing, while the platform team's GitSync in the agent's namespace
// applies. With --default-service-account the tenant's GitSync applies as
// that account of its namespace.
func TestAgentRefusesTenantWithoutAccount(t *testing.T) {
	cp, c := startControlPlane(t)
	ctx := context.Background()
	repo := newRepo(t, settingsYAML("one"))
	tenant, err := testenv.CreateNamespace(ctx, c, "tenant")
	if err != nil {
		t.Fatal(err)
	}
	platform := "platform"
	agent := startAgent(t, cp.KubeconfigPath, filepath.Join(t.TempDir(), "a"), "--leader-elect=false", "--namespace", platform)
	// The agent creates its namespace when it is missing.
	waitFor(t, time.Minute, func() bool { return c.Get(ctx, types.NamespacedName{Name: platform}, &corev1.Namespace{}) == nil }, &lockedBuffer{})
	for _, ns := range []string{tenant, platform} {
		if err := c.Create(ctx, appGitSync(ns, repo.URL)); err != nil {
			t.Fatal(err)
		}
	}
	waitReady(t, c, types.NamespacedName{Namespace: platform, Name: "app"})
	waitFor(t, time.Minute, func() bool {
		gs := &v1alpha1.GitSync{}
		if c.Get(ctx, types.NamespacedName{Namespace: tenant, Name: "app"}, gs) != nil {
			return false
		}
		stalled := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.StalledCondition)
		return stalled != nil && stalled.Reason == v1alpha1.ReasonServiceAccountRequired &&
			strings.Contains(stalled.Message, "--default-service-account")
	}, &lockedBuffer{})
	if err := c.Get(ctx, types.NamespacedName{Namespace: tenant, Name: "settings"}, &corev1.ConfigMap{}); err == nil {
		t.Fatal("the tenant's ConfigMap was applied with the agent's rights")
	}
	agent.stop()

	// The platform team names a default account and grants it the
	// tenant's namespace: the tenant's GitSync now applies as that account.
	// (A RoleBinding of cluster-admin: all rights in that namespace only.
	// The aggregated admin role stays empty without kube-controller-manager.)
	if _, err := testenv.GrantDeployer(ctx, c, tenant, "cluster-admin", false); err != nil {
		t.Fatal(err)
	}
	startAgent(t, cp.KubeconfigPath, filepath.Join(t.TempDir(), "b"), "--leader-elect=false", "--namespace", platform,
		"--default-service-account", testenv.DeployerAccount)
	waitReady(t, c, types.NamespacedName{Namespace: tenant, Name: "app"})
	if err := c.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "settings"}, &corev1.ConfigMap{}); err != nil {
		t.Fatal(err)
	}
}
