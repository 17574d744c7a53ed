package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// editorOf makes a user who holds the built-in edit role in ns plus the
// GitSync write rights deploy/rbac.yaml aggregates into edit, and returns a
// client that acts as that user.
func editorOf(t *testing.T, ns, user string) client.Client {
	t.Helper()
	ctx := testContext(t)
	edit := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "gitsync-edit-" + ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"gitsyncs"},
			Verbs: []string{"create", "delete", "deletecollection", "patch", "update", "get", "list", "watch"}}},
	}
	if err := k8s.Create(ctx, edit); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), edit) })
	for _, role := range []string{"edit", edit.Name} {
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-" + role},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		}
		if err := k8s.Create(ctx, rb); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(adminConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: testScheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestNamespaceEditorCannotReachClusterScope: someone who may edit one
// namespace, and so create GitSyncs there, tries every field of the spec to
// apply a ClusterRoleBinding that makes them cluster-admin, or to write into
// another namespace. Their GitSyncs act as their namespace's default
// account (admin of that namespace only), which RBAC stops; the fields
// that would name another namespace's account or Secret are refused by the
// CRD; the agent's namespace and the status are out of their reach.
func TestNamespaceEditorCannotReachClusterScope(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	team := newTenantNamespace(t, "tenant")
	if _, err := testenv.GrantDeployer(ctx, k8s, team, "admin", false); err != nil {
		t.Fatal(err)
	}
	user := "mallory-" + team
	mallory := editorOf(t, team, user)
	// What the agent's namespace holds: a Secret mallory wants to use.
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testAgentNamespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	binding := "pwn-" + team
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "evil")
	commit(t, repo, map[string]string{
		"evil/kustomization.yaml": kustomization("binding.yaml"),
		"evil/binding.yaml": "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: " + binding +
			"\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n  - kind: User\n    apiGroup: rbac.authorization.k8s.io\n    name: " + user + "\n",
		"other/kustomization.yaml":  kustomization("cm.yaml"),
		"other/cm.yaml":             configMapYAML("planted", "kube-system", map[string]string{"by": user}),
		"target/kustomization.yaml": kustomization("cm.yaml"),
		"target/cm.yaml":            configMapYAML("planted-"+team, "", map[string]string{"by": user}),
	}, nil, "escalate")

	// Accepted by the API server, refused at apply time by RBAC.
	refused := map[string]func(gs *v1alpha1.GitSync){
		"no account: the default one": func(gs *v1alpha1.GitSync) {},
		"the agent's account name":    func(gs *v1alpha1.GitSync) { gs.Spec.ServiceAccountName = "tether-agent" },
		"allowedNamespaces": func(gs *v1alpha1.GitSync) {
			gs.Spec.Path = "./other"
			gs.Spec.AllowedNamespaces = []string{team, "kube-system"}
		},
		"an object in kube-system":    func(gs *v1alpha1.GitSync) { gs.Spec.Path = "./other" },
		"targetNamespace kube-system": func(gs *v1alpha1.GitSync) { gs.Spec.Path = "./target"; gs.Spec.TargetNamespace = "kube-system" },
		"dependsOn the platform":      func(gs *v1alpha1.GitSync) { gs.Spec.DependsOn = nil },
		"remote bases and substitutes": func(gs *v1alpha1.GitSync) {
			gs.Spec.AllowRemoteBases = true
			gs.Spec.Substitute = map[string]string{"x": "y"}
		},
	}
	i := 0
	for name, mutate := range refused {
		i++
		gs := newGitSync(team, "evil-"+string(rune('a'+i)), repo.URL, "./evil")
		mutate(gs)
		if err := mallory.Create(ctx, gs); err != nil {
			t.Fatalf("%s: mallory may create GitSyncs in %s: %v", name, team, err)
		}
		key := client.ObjectKeyFromObject(gs)
		t.Cleanup(func() { deleteGitSync(t, key, false) })
		got := waitGitSync(t, key, func(gs *v1alpha1.GitSync) error {
			c := readyOf(gs)
			if c == nil || c.Status != metav1.ConditionFalse {
				return errors.New("not failed yet")
			}
			return nil
		})
		msg := readyOf(got).Message
		if !strings.Contains(msg, "forbidden") || !strings.Contains(msg, "system:serviceaccount:"+team+":") {
			t.Errorf("%s: Ready message %q, want a refusal of the namespace's own account", name, msg)
		}
	}

	// Refused by the API server: names of other namespaces' things.
	for name, mutate := range map[string]func(gs *v1alpha1.GitSync){
		"another namespace's account": func(gs *v1alpha1.GitSync) {
			gs.Spec.ServiceAccountName = "system:serviceaccount:" + testAgentNamespace + ":tether-agent"
		},
		"namespace/account": func(gs *v1alpha1.GitSync) { gs.Spec.ServiceAccountName = testAgentNamespace + "/tether-agent" },
		"namespace/secret": func(gs *v1alpha1.GitSync) {
			gs.Spec.Source.SecretRef = &v1alpha1.LocalObjectReference{Name: testAgentNamespace + "/git"}
		},
	} {
		gs := newGitSync(team, "bad-ref", repo.URL, "./evil")
		mutate(gs)
		if err := mallory.Create(ctx, gs); !apierrors.IsInvalid(err) {
			t.Errorf("%s: create = %v, want Invalid", name, err)
		}
	}
	// The agent's namespace, where GitSyncs act as the agent: forbidden.
	if err := mallory.Create(ctx, newGitSync(testAgentNamespace, "evil", repo.URL, "./evil")); !apierrors.IsForbidden(err) {
		t.Errorf("create in %s = %v, want Forbidden", testAgentNamespace, err)
	}
	// The status (inventory) that prune trusts: forbidden.
	gs := newGitSync(team, "status", repo.URL, "./evil")
	gs.Spec.Suspend = true
	if err := mallory.Create(ctx, gs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteGitSync(t, client.ObjectKeyFromObject(gs), false) })
	gs.Status.Inventory = &v1alpha1.ResourceInventory{Entries: []v1alpha1.ResourceRef{{ID: "kube-system_coredns_apps_Deployment", Version: "v1"}}}
	if err := mallory.Status().Update(ctx, gs); !apierrors.IsForbidden(err) {
		t.Errorf("status update = %v, want Forbidden", err)
	}

	mustBeAbsent(t, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: binding}})
	mustBeAbsent(t, configMap("kube-system", "planted"))
	mustBeAbsent(t, configMap("kube-system", "planted-"+team))
}

// TestTenantDefaultAccountWithoutRightsAppliesNothing: a GitSync in a
// namespace where the platform team bound nothing to the default account
// applies nothing, and says which account was refused. (An agent without
// a default account refuses such GitSyncs before any work, reason
// ServiceAccountRequired: cmd/tether's TestAgentRefusesTenantWithoutAccount.)
func TestTenantDefaultAccountWithoutRightsAppliesNothing(t *testing.T) {
	t.Parallel()
	team := newTenantNamespace(t, "norights")
	_, repo, sha := appRepo(t)
	key := create(t, newGitSync(team, "app", repo.URL, "./app"))
	got := waitFailed(t, key, v1alpha1.ReasonApplyFailed, "forbidden", "system:serviceaccount:"+team+":"+testenv.DeployerAccount)
	if got.Status.LastAppliedRevision != "" || got.Status.LastAttemptedRevision != mainRev(sha) {
		t.Errorf("status: %s", describe(got))
	}
	mustBeAbsent(t, configMap(team, "settings"))
}

// TestEmptyRenderPrunesNothing: a commit that leaves the folder with no
// objects (resources: []) does not prune what the GitSync applied; it is
// refused with reason EmptyRender until spec.allowEmpty says that empty is
// meant.
func TestEmptyRenderPrunesNothing(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "empty")
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "app")
	sha1 := commit(t, repo, map[string]string{
		"app/kustomization.yaml": kustomization("a.yaml", "b.yaml"),
		"app/a.yaml":             configMapYAML("a", "", map[string]string{"k": "v"}),
		"app/b.yaml":             configMapYAML("b", "", map[string]string{"k": "v"}),
	}, nil, "two objects")
	key := create(t, newGitSync(ns, "app", repo.URL, "./app"))
	waitApplied(t, key, mainRev(sha1))

	sha2 := commit(t, repo, map[string]string{
		"app/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n",
	}, nil, "oops: no resources")
	got := waitFailed(t, key, v1alpha1.ReasonEmptyRender, "rendered no objects", "2 applied objects", "spec.allowEmpty")
	if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.StalledCondition); c == nil || c.Reason != v1alpha1.ReasonEmptyRender {
		t.Errorf("Stalled = %+v, want reason %s", c, v1alpha1.ReasonEmptyRender)
	}
	if got.Status.LastAttemptedRevision != mainRev(sha2) || got.Status.LastAppliedRevision != mainRev(sha1) || len(got.Status.Inventory.Entries) != 2 {
		t.Errorf("after the empty commit: %s", describe(got))
	}
	mustExist(t, configMap(ns, "a"))
	mustExist(t, configMap(ns, "b"))

	// Meant: allowEmpty lets it prune everything.
	update(t, key, func(gs *v1alpha1.GitSync) { gs.Spec.AllowEmpty = true })
	got = waitApplied(t, key, mainRev(sha2))
	if got.Status.Inventory != nil && len(got.Status.Inventory.Entries) != 0 {
		t.Errorf("inventory after allowEmpty: %v", got.Status.Inventory.Entries)
	}
	eventually(t, waitTimeout, func() error { return absent(t, configMap(ns, "a")) })
	eventually(t, waitTimeout, func() error { return absent(t, configMap(ns, "b")) })
}

// TestPruneKeepsNamespaceWithOthersObjects: a Namespace that leaves Git is
// not deleted while it holds objects the GitSync never applied, and a
// Warning event says so.
func TestPruneKeepsNamespaceWithOthersObjects(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "nsprune")
	team := ns + "-team"
	t.Cleanup(func() {
		_ = k8s.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team}})
	})
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "app")
	sha1 := commit(t, repo, map[string]string{
		"app/kustomization.yaml": kustomization("ns.yaml", "cm.yaml"),
		"app/ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + team + "\n",
		"app/cm.yaml":            configMapYAML("ours", team, map[string]string{"k": "v"}),
	}, nil, "a namespace")
	key := create(t, newGitSync(ns, "app", repo.URL, "./app"))
	waitApplied(t, key, mainRev(sha1))
	// Someone else keeps data there.
	if err := k8s.Create(testContext(t), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: "theirs"}}); err != nil {
		t.Fatal(err)
	}
	sha2 := commit(t, repo, map[string]string{
		"app/kustomization.yaml": kustomization("other.yaml"),
		"app/ns.yaml":            testenv.DeleteFile,
		"app/cm.yaml":            testenv.DeleteFile,
		"app/other.yaml":         configMapYAML("other", "", map[string]string{"k": "v"}),
	}, nil, "the namespace leaves Git")
	waitApplied(t, key, mainRev(sha2))
	waitEvent(t, key, corev1.EventTypeWarning, v1alpha1.ReasonNamespaceKept, "Namespace "+team, "ConfigMap/theirs")
	eventually(t, waitTimeout, func() error { return absent(t, configMap(team, "ours")) })
	live := &corev1.Namespace{}
	if err := k8s.Get(testContext(t), client.ObjectKey{Name: team}, live); err != nil || live.DeletionTimestamp != nil {
		t.Fatalf("namespace %s: %v (deleting: %v), want it kept", team, err, live.DeletionTimestamp)
	}
	mustExist(t, configMap(team, "theirs"))
}

// TestFinalizerLetsTerminatingNamespaceGo: a tenant namespace is deleted;
// the RoleBinding its GitSync's account needs to prune is gone first, so the
// prune on deletion fails. The finalizer gives up instead of holding the
// namespace in Terminating forever.
func TestFinalizerLetsTerminatingNamespaceGo(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	team := newTenantNamespace(t, "doomed")
	if _, err := testenv.GrantDeployer(ctx, k8s, team, "admin", false); err != nil {
		t.Fatal(err)
	}
	_, repo, sha := appRepo(t)
	key := create(t, newGitSync(team, "app", repo.URL, "./app"))
	waitApplied(t, key, mainRev(sha))

	// The order a namespace deletion may take: the binding goes first.
	if err := k8s.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: testenv.DeployerAccount}}); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*waitTimeout, func() error {
		err := k8s.Get(ctx, client.ObjectKey{Name: team}, &corev1.Namespace{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		gs := &v1alpha1.GitSync{}
		_ = k8s.Get(ctx, key, gs)
		return fmt.Errorf("namespace %s still there (err %v); GitSync finalizers %v", team, err, gs.Finalizers)
	})
}
