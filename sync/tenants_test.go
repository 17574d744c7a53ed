package sync

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// deployer creates a ServiceAccount named deployer in ns that may do
// anything in ns and nothing elsewhere (a Role and a RoleBinding).
func deployer(t *testing.T, ns string) {
	t.Helper()
	ctx := testContext(t)
	for _, obj := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployer"}},
		&rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployer"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}},
		},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployer"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "deployer"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "deployer"}},
		},
	} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
}

func clusterRoleYAML(name string) string {
	return "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: " + name +
		"\nrules:\n  - apiGroups: ['*']\n    resources: ['*']\n    verbs: ['*']\n"
}

// A GitSync with spec.serviceAccountName applies as that account: inside
// its namespace it works; an object in another namespace or at cluster
// scope is refused by RBAC alone (no allowedNamespaces), with a message
// naming the object, the account and the verb, and nothing of that commit
// is written.
func TestServiceAccountImpersonation(t *testing.T) {
	t.Parallel()
	teamA := newNamespace(t, "team-a")
	teamB := newNamespace(t, "team-b")
	deployer(t, teamA)
	// Something of team B that team A's repository names.
	shared := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: teamB, Name: "shared"}, Data: map[string]string{"owner": "team-b"}}
	if err := k8s.Create(testContext(t), shared); err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:" + teamA + ":deployer"

	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "team-a")
	sha1 := commit(t, repo, map[string]string{
		"app/kustomization.yaml": kustomization("settings.yaml"),
		"app/settings.yaml":      configMapYAML("settings", "", map[string]string{"owner": "team-a"}),
	}, nil, "team a")
	gs := newGitSync(teamA, "team-a", repo.URL, "./app")
	gs.Spec.ServiceAccountName = "deployer"
	key := create(t, gs)
	waitApplied(t, key, mainRev(sha1))
	mustExist(t, configMap(teamA, "settings"))

	// Into team B's namespace: forbidden by RBAC.
	sha2 := commit(t, repo, map[string]string{
		"app/kustomization.yaml": kustomization("settings.yaml", "extra.yaml", "intruder.yaml"),
		"app/extra.yaml":         configMapYAML("extra", "", map[string]string{"a": "b"}),
		"app/intruder.yaml":      configMapYAML("shared", teamB, map[string]string{"owner": "team-a"}),
	}, nil, "reach into team b")
	got := waitFailed(t, key, v1alpha1.ReasonApplyFailed,
		"ConfigMap/"+teamB+"/shared", "forbidden", `User "`+user+`" cannot`, `resource "configmaps"`, `in the namespace "`+teamB+`"`)
	t.Logf("denied: %s", readyOf(got).Message)
	checkVerb(t, readyOf(got).Message)
	if got.Status.LastAttemptedRevision != mainRev(sha2) || got.Status.LastAppliedRevision != mainRev(sha1) {
		t.Errorf("after the denied commit: %s", describe(got))
	}
	waitEvent(t, key, corev1.EventTypeWarning, v1alpha1.ReasonApplyFailed, "ConfigMap/"+teamB+"/shared", "forbidden")
	// (Unlike allowedNamespaces, which refuses the whole plan, RBAC is met
	// at apply time, per namespace: team A's own "extra" may be applied.)

	// At cluster scope: forbidden as well.
	clusterRole := teamA + "-escalate"
	sha3 := commit(t, repo, map[string]string{
		"app/kustomization.yaml": kustomization("settings.yaml", "extra.yaml", "escalate.yaml"),
		"app/intruder.yaml":      testenv.DeleteFile,
		"app/escalate.yaml":      clusterRoleYAML(clusterRole),
	}, nil, "reach for the cluster")
	got = waitFailed(t, key, v1alpha1.ReasonApplyFailed,
		"ClusterRole/"+clusterRole, "forbidden", `User "`+user+`" cannot`, `resource "clusterroles"`, "at the cluster scope")
	t.Logf("denied: %s", readyOf(got).Message)
	checkVerb(t, readyOf(got).Message)
	if got.Status.LastAttemptedRevision != mainRev(sha3) || got.Status.LastAppliedRevision != mainRev(sha1) {
		t.Errorf("after the denied commit: %s", describe(got))
	}
	mustBeAbsent(t, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: clusterRole}})

	// Back inside its namespace, it applies and prunes as the account.
	sha4 := commit(t, repo, map[string]string{
		"app/kustomization.yaml": kustomization("extra.yaml"),
		"app/escalate.yaml":      testenv.DeleteFile,
	}, nil, "only team a")
	waitApplied(t, key, mainRev(sha4))
	mustExist(t, configMap(teamA, "extra"))
	mustBeAbsent(t, configMap(teamA, "settings"))

	// Team B's ConfigMap was never written.
	after := configMap(teamB, "shared")
	mustExist(t, after)
	if after.ResourceVersion != shared.ResourceVersion || after.Data["owner"] != "team-b" || len(after.Labels) != 0 {
		t.Errorf("team B's ConfigMap was modified: resourceVersion %s (was %s), data %v, labels %v",
			after.ResourceVersion, shared.ResourceVersion, after.Data, after.Labels)
	}
}

// checkVerb fails unless a forbidden message names the verb that was
// refused.
func checkVerb(t *testing.T, msg string) {
	t.Helper()
	for _, verb := range []string{"get", "patch", "create", "update"} {
		if strings.Contains(msg, "cannot "+verb+" resource") {
			return
		}
	}
	t.Errorf("message does not name the verb: %q", msg)
}

// tenantsLayout reads examples/tenants with team-a and team-b renamed to
// teamA and teamB (folders and contents), as files of a repository under
// tenants/.
func tenantsLayout(t *testing.T, teamA, teamB string) map[string]string {
	t.Helper()
	rename := strings.NewReplacer("team-a", teamA, "team-b", teamB)
	root := filepath.Join(examplesDir, "tenants")
	files := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files["tenants/"+rename.Replace(filepath.ToSlash(rel))] = rename.Replace(string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// examples/tenants (with its team namespaces renamed, so that it runs
// beside TestExampleTenants): team A's repository folder cannot create or
// change anything at cluster scope, not even team B's Namespace, nor write
// into team B's namespace; team B keeps syncing.
func TestExampleTenantsClusterScope(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "platform")
	suffix := strings.TrimPrefix(ns, "platform-")
	teamA, teamB := "team-a-"+suffix, "team-b-"+suffix
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "platform/tenants")
	sha1 := commit(t, repo, tenantsLayout(t, teamA, teamB), nil, "tenants")
	platform := exampleGitSyncs(t, "tenants/gitsync.yaml", ns, repo.URL)["platform"]
	platform.Spec.Substitute["tenants_repo_url"] = repo.URL
	platform.Spec.Substitute["tenants_interval"] = testInterval.String()
	pkey := create(t, platform)
	a := types.NamespacedName{Namespace: teamA, Name: teamA}
	b := types.NamespacedName{Namespace: teamB, Name: teamB}
	keepOnCleanup(t, pkey, a, b)
	waitApplied(t, pkey, mainRev(sha1))
	waitApplied(t, a, mainRev(sha1))
	waitApplied(t, b, mainRev(sha1))
	nsB := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: teamB}}
	mustExist(t, nsB)
	settingsB := configMap(teamB, teamB+"-settings")
	mustExist(t, settingsB)

	clusterRole := teamA + "-escalate"
	sha2 := commit(t, repo, map[string]string{
		"tenants/" + teamA + "/kustomization.yaml": kustomization("app.yaml", "escalate.yaml", "namespace.yaml", "intruder.yaml"),
		"tenants/" + teamA + "/escalate.yaml":      clusterRoleYAML(clusterRole),
		// Team B's own Namespace, relabelled by team A.
		"tenants/" + teamA + "/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + teamB + "\n  labels: {owner: " + teamA + "}\n",
		"tenants/" + teamA + "/intruder.yaml":  configMapYAML(teamB+"-settings", teamB, map[string]string{"owner": teamA}),
	}, nil, "team a reaches out")
	got := waitFailed(t, a, v1alpha1.ReasonNamespaceDenied,
		"ClusterRole/"+clusterRole, "cluster-scoped objects are refused",
		fmt.Sprintf("Namespace %q is not in allowedNamespaces", teamB),
		fmt.Sprintf("%q is not in allowedNamespaces", teamB))
	t.Logf("denied: %s", readyOf(got).Message)
	if got.Status.LastAppliedRevision != mainRev(sha1) {
		t.Errorf("%s: %s", a, describe(got))
	}
	waitApplied(t, b, mainRev(sha2))
	waitApplied(t, pkey, mainRev(sha2))

	mustBeAbsent(t, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: clusterRole}})
	afterNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: teamB}}
	mustExist(t, afterNS)
	if afterNS.ResourceVersion != nsB.ResourceVersion || afterNS.Labels["owner"] != "" {
		t.Errorf("team B's Namespace changed: labels %v", afterNS.Labels)
	}
	after := configMap(teamB, teamB+"-settings")
	mustExist(t, after)
	if after.Data["owner"] != teamB || after.Labels[v1alpha1.NameLabel] != teamB {
		t.Errorf("team B's ConfigMap changed: data %v, labels %v", after.Data, after.Labels)
	}
}
