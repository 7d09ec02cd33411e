package nodes

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// User is who kwok's controllers act as: a user of their own, not the admin (whose group,
// system:masters, is exempt from priority and fairness and passes every authorizer) and not
// system:node:NAME (one client acts for every node, which NodeRestriction is there to stop).
// The admin client impersonates it.
const User = "wasmkube:nodes"

// clusterRole is what a kubelet does to nodes, leases, Pods and events, for every node: the
// rules kwok's fast stages need.
func clusterRole() *rbacv1.ClusterRole {
	verbs := func(v ...string) []string { return v }
	return &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: User, Labels: map[string]string{ManagedByLabel: ManagedBy}},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: verbs("get", "list", "watch", "patch", "update")},
			{APIGroups: []string{""}, Resources: []string{"nodes/status", "pods/status"}, Verbs: verbs("get", "patch", "update")},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: verbs("get", "list", "watch", "patch", "update", "delete")},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: verbs("get", "list", "watch", "create", "update", "patch", "delete")},
			{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: verbs("create", "update", "patch")},
		},
	}
}

func clusterRoleBinding() *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: User, Labels: map[string]string{ManagedByLabel: ManagedBy}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: User},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: User}},
	}
}

// ensureRBAC creates kwok's ClusterRole and its binding, or updates the role to these rules. The
// objects are read first: on a warm start they are there as they should be, and a read is
// served from the apiserver's cache while an RBAC write costs up to a tenth of a second.
func ensureRBAC(ctx context.Context, admin kubernetes.Interface) error {
	roles, bindings := admin.RbacV1().ClusterRoles(), admin.RbacV1().ClusterRoleBindings()
	want := clusterRole()
	have, err := roles.Get(ctx, User, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := roles.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create ClusterRole %s: %w", User, err)
		}
	case err != nil:
		return fmt.Errorf("read ClusterRole %s: %w", User, err)
	case !equality.Semantic.DeepEqual(have.Rules, want.Rules):
		have.Rules = want.Rules
		if _, err := roles.Update(ctx, have, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update ClusterRole %s: %w", User, err)
		}
	}
	if _, err := bindings.Get(ctx, User, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if _, err := bindings.Create(ctx, clusterRoleBinding(), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create ClusterRoleBinding %s: %w", User, err)
		}
	} else if err != nil {
		return fmt.Errorf("read ClusterRoleBinding %s: %w", User, err)
	}
	return nil
}
