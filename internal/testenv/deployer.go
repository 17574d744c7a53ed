package testenv

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DeployerAccount is the service account the test agents impersonate for
// GitSyncs outside their own namespace (their --default-service-account),
// as deploy/ does with tether-deployer.
const DeployerAccount = "tether-deployer"

// GrantDeployer creates the service account DeployerAccount in ns and binds
// it to clusterRole: with a RoleBinding in ns (a tenant confined to its
// namespace) when clusterWide is false, else with a ClusterRoleBinding (a
// namespace the platform team trusts with the whole cluster). The returned
// function removes a ClusterRoleBinding again; namespaced objects go with
// the namespace.
func GrantDeployer(ctx context.Context, c client.Client, ns, clusterRole string, clusterWide bool) (func(context.Context) error, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: DeployerAccount}}
	if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("ServiceAccount %s/%s: %w", ns, DeployerAccount, err)
	}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole}
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: DeployerAccount}}
	if !clusterWide {
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: DeployerAccount}, RoleRef: ref, Subjects: subjects}
		if err := c.Create(ctx, rb); err != nil {
			return nil, fmt.Errorf("RoleBinding %s/%s: %w", ns, DeployerAccount, err)
		}
		return func(context.Context) error { return nil }, nil
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: DeployerAccount + "-" + ns}, RoleRef: ref, Subjects: subjects}
	if err := c.Create(ctx, crb); err != nil {
		return nil, fmt.Errorf("ClusterRoleBinding %s: %w", crb.Name, err)
	}
	return func(ctx context.Context) error { return client.IgnoreNotFound(c.Delete(ctx, crb)) }, nil
}
