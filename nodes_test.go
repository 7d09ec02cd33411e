package wasmkube_test

import (
	"context"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/wasmkube/wasmkube/apiserver/nodes"
)

// testSimulatedNodes runs package nodes on the shared cluster: nodes made Ready, a Pod bound to
// one reported Running with the node's IPs, its deletion completed, and nodes no longer in the
// spec removed by the next Start. It runs before the restarts that put a deny-all module first
// in the authorizer chain, which kwok's user meets like any other.
func testSimulatedNodes(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	spec := nodes.Spec{Prefix: "sim", Count: 2, CPU: resource.MustParse("2"), Memory: resource.MustParse("4Gi"), Pods: 10}
	sim, err := nodes.Start(ctx, cluster.RESTConfig, spec, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanUpNodes(t) })
	for _, name := range spec.Names() {
		n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil || n.Status.Allocatable.Cpu().String() != "2" || !nodes.IsReady(n) {
			t.Fatalf("node %s: %v %+v", name, err, n.Status)
		}
	}

	// kwok acts as a user of its own, allowed what kubelets do and no more.
	for _, ra := range []struct {
		attrs authorizationv1.ResourceAttributes
		want  bool
	}{
		{authorizationv1.ResourceAttributes{Verb: "patch", Resource: "pods", Subresource: "status"}, true},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-node-lease"}, true},
		{authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets"}, false},
		{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods"}, false},
	} {
		sar, err := c.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: nodes.User, Groups: []string{"system:authenticated"}, ResourceAttributes: &ra.attrs}}, metav1.CreateOptions{})
		if err != nil || sar.Status.Allowed != ra.want {
			t.Errorf("%s may %s %s/%s: %v (%v), want %v", nodes.User, ra.attrs.Verb, ra.attrs.Resource, ra.attrs.Subresource, sar.Status.Allowed, err, ra.want)
		}
	}

	ns := createNamespace(t, c, "sim")
	if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "on-sim-1", Labels: map[string]string{"team": "a"}},
		Spec: corev1.PodSpec{NodeName: "sim-1", AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
	}
	if _, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the pod Running", func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return p.Status.Phase == corev1.PodRunning && strings.HasPrefix(p.Status.PodIP, "10.244.1.") && p.Status.HostIP == "172.18.0.3" &&
			len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready && podReady(p), nil
	})
	if err := c.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the pod gone", func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	sim.Stop()

	spec.Count = 1
	if sim, err = nodes.Start(ctx, cluster.RESTConfig, spec, logr.Discard()); err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	if _, err := c.CoreV1().Nodes().Get(ctx, "sim-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("sim-1, no longer in the spec, is still there: %v", err)
	}
	if _, err := c.CoreV1().Nodes().Get(ctx, "sim-0", metav1.GetOptions{}); err != nil {
		t.Errorf("sim-0: %v", err)
	}
}

// cleanUpNodes removes the nodes the test made, as an up without nodes does.
func cleanUpNodes(t *testing.T) {
	if n, err := nodes.Remove(context.Background(), cluster.RESTConfig); err != nil || n != 1 {
		t.Errorf("remove the nodes left: %d removed, %v; want 1 (sim-0)", n, err)
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
