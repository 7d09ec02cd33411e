package nodes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/kwok/pkg/kwok/controllers"
	kwoklog "sigs.k8s.io/kwok/pkg/log"
)

// Simulator runs kwok's controllers over the simulated nodes.
type Simulator struct {
	cancel context.CancelFunc
}

// Start makes the cluster's simulated nodes what spec says and runs kwok's controllers until
// Stop. Nodes of the spec that do not exist are created; nodes an earlier Start made
// (ManagedByLabel) that the spec no longer names are deleted (kube-controller-manager's pod
// garbage collector then removes their Pods); existing nodes keep their objects (a changed
// capacity applies to nodes created after). kwok acts as User, which admin (allowed to manage
// RBAC and nodes) impersonates. Start returns once every node is Ready. kwok's warnings and
// errors go to logger.
//
// # Notes
//
//   - kwok's controllers have no stop: Stop cancels their context, which ends their watches and
//     workers; kwok's event broadcaster keeps a few idle goroutines for the life of the process.
func Start(ctx context.Context, admin *rest.Config, spec Spec, logger logr.Logger) (*Simulator, error) {
	want, err := Build(spec)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return nil, err
	}
	if err := ensureRBAC(ctx, client); err != nil {
		return nil, err
	}
	if _, err := reconcile(ctx, client, want); err != nil {
		return nil, err
	}
	conf, err := controllerConfig(admin)
	if err != nil {
		return nil, fmt.Errorf("kwok clients: %w", err)
	}
	ctr, err := controllers.NewController(conf)
	if err != nil {
		return nil, fmt.Errorf("kwok: %w", err)
	}
	runCtx, cancel := context.WithCancel(kwoklog.NewContext(context.WithoutCancel(ctx), kwokLogger(logger)))
	if err := ctr.Start(runCtx); err != nil {
		cancel()
		return nil, fmt.Errorf("kwok: %w", err)
	}
	if err := waitReady(ctx, client, spec.Names()); err != nil {
		cancel()
		return nil, err
	}
	return &Simulator{cancel: cancel}, nil
}

// Remove deletes the nodes an earlier Start made, for a cluster that has no simulated nodes
// now, and returns how many there were.
func Remove(ctx context.Context, admin *rest.Config) (int, error) {
	client, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return 0, err
	}
	return reconcile(ctx, client, nil)
}

// readyTimeout bounds how long Start waits for n nodes to be Ready. kwok makes a new node Ready
// within milliseconds; a node an earlier run left Ready stays so.
func readyTimeout(n int) time.Duration { return 10*time.Second + time.Duration(n)*20*time.Millisecond }

// waitReady waits until every named node's Ready condition is True.
func waitReady(ctx context.Context, client kubernetes.Interface, names []string) error {
	var notReady []string
	timeout := readyTimeout(len(names))
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: labels.Set{ManagedByLabel: ManagedBy}.String()})
		if err != nil {
			return false, nil // the next poll tells
		}
		notReady = slices.DeleteFunc(slices.Clone(names), func(name string) bool {
			return slices.ContainsFunc(list.Items, func(n corev1.Node) bool { return n.Name == name && IsReady(&n) })
		})
		return len(notReady) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("nodes not Ready after %s: %s (kwok's log lines, named kwok, are among the Kubernetes logs)", timeout, strings.Join(notReady, ", "))
	}
	return nil
}

// IsReady reports whether a node's Ready condition is True.
func IsReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Stop stops kwok's controllers. The Node objects stay: the next Start finds them.
func (s *Simulator) Stop() { s.cancel() }

// reconcile creates the wanted nodes that are missing and deletes the nodes wasmkube made that
// are not wanted; it returns how many it deleted.
func reconcile(ctx context.Context, client kubernetes.Interface, want []*corev1.Node) (int, error) {
	nodes := client.CoreV1().Nodes()
	have, err := nodes.List(ctx, metav1.ListOptions{LabelSelector: labels.Set{ManagedByLabel: ManagedBy}.String()})
	if err != nil {
		return 0, fmt.Errorf("list nodes: %w", err)
	}
	var errs []error
	deleted := 0
	for _, n := range have.Items {
		if slices.ContainsFunc(want, func(w *corev1.Node) bool { return w.Name == n.Name }) {
			continue
		}
		if err := nodes.Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete node %s: %w", n.Name, err))
			continue
		}
		deleted++
	}
	for _, w := range want {
		if slices.ContainsFunc(have.Items, func(n corev1.Node) bool { return n.Name == w.Name }) {
			continue
		}
		if _, err := nodes.Create(ctx, w, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, fmt.Errorf("create node %s: %w", w.Name, err))
		}
	}
	return deleted, errors.Join(errs...)
}
