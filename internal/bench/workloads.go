package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// Workload sizes: Deployments × replicas Pods on simulated nodes of kubelet's default capacity.
const (
	workloadDeployments = 10
	workloadReplicas    = 100
	workloadNodes       = 10
	// bareProfile is the demo without kube-scheduler and nodes: the start rows compare it with
	// the demo to show what they cost.
	bareProfile     = "demo-bare"
	workloadProfile = "bench-pods"
)

// WorkloadResult is the time from the first Deployment create until every Pod is scheduled,
// until every Pod is Running, and from the Deployments' deletion until every Pod is gone.
type WorkloadResult struct {
	Pods, Nodes                 int
	Scheduled, Running, Deleted Series
}

// writeDemoVariant writes a user profile NAME: the demo as h's binary prints it, changed by edit.
func writeDemoVariant(ctx context.Context, h home, name string, edit func(map[string]any)) error {
	out, err := runOutput(ctx, h.bin, h.env(), "profiles", "show", "demo")
	if err != nil {
		return err
	}
	var p map[string]any
	if err := yaml.Unmarshal([]byte(out), &p); err != nil {
		return fmt.Errorf("read the demo profile: %w", err)
	}
	edit(p)
	p["name"] = name
	data, err := yaml.Marshal(p)
	if err != nil {
		return err
	}
	dir := filepath.Join(h.root, "config", "wasmkube", "profiles")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".yaml"), data, 0o600)
}

func withoutNodes(p map[string]any) {
	delete(p, "nodes")
	delete(p, "scheduler")
}

func runWorkloads(ctx context.Context, cfg Config, rep *Report) error {
	h, err := newHome(filepath.Join(cfg.WorkDir, "workloads"), binPath(cfg))
	if err != nil {
		return err
	}
	if err := writeDemoVariant(ctx, h, workloadProfile, func(p map[string]any) {
		p["nodes"] = map[string]any{"count": workloadNodes}
	}); err != nil {
		return err
	}
	u, _, err := h.startUp(ctx, workloadProfile, workloadProfile)
	if err != nil {
		return err
	}
	defer func() { _, _ = u.stop() }()
	client, err := clientFor(u.kubeconfig())
	if err != nil {
		return err
	}
	res := &WorkloadResult{Pods: workloadDeployments * workloadReplicas, Nodes: workloadNodes}
	for r := range cfg.Rounds {
		if err := workloadRound(ctx, client, fmt.Sprintf("load-%d", r), res); err != nil {
			return fmt.Errorf("round %d: %w (logs: %s)", r, err, filepath.Join(h.dataDir(workloadProfile), "logs"))
		}
	}
	rep.Workloads = res
	return nil
}

// workloadRound creates the Deployments in a new namespace, follows their Pods (an informer,
// which lists again if the server drops its watch) until all run, then deletes the Deployments
// and follows until the Pods are gone.
func workloadRound(ctx context.Context, c kubernetes.Interface, ns string, res *WorkloadResult) error {
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	factory := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace(ns))
	pods := factory.Core().V1().Pods().Lister()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	began := time.Now()
	for i := range workloadDeployments {
		if _, err := c.AppsV1().Deployments(ns).Create(ctx, loadDeployment(i), metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	scheduled, err := waitPods(ctx, pods, func(list []*corev1.Pod) bool { return countPods(list, scheduledPod) == res.Pods })
	if err != nil {
		return fmt.Errorf("scheduled: %w", err)
	}
	running, err := waitPods(ctx, pods, func(list []*corev1.Pod) bool { return countPods(list, runningPod) == res.Pods })
	if err != nil {
		return fmt.Errorf("running: %w", err)
	}
	res.Scheduled.AddDuration(scheduled.Sub(began), time.Second)
	res.Running.AddDuration(running.Sub(began), time.Second)
	began = time.Now()
	if err := c.AppsV1().Deployments(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		return err
	}
	gone, err := waitPods(ctx, pods, func(list []*corev1.Pod) bool { return len(list) == 0 })
	if err != nil {
		return fmt.Errorf("deleted: %w", err)
	}
	res.Deleted.AddDuration(gone.Sub(began), time.Second)
	return c.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
}

// waitPods checks the informer's Pods every 20 ms until done holds, and returns when it did.
func waitPods(ctx context.Context, pods corelisters.PodLister, done func([]*corev1.Pod) bool) (time.Time, error) {
	var list []*corev1.Pod
	var at time.Time
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		var err error
		list, err = pods.List(labels.Everything())
		at = time.Now()
		return err == nil && done(list), err
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %d pods, %d scheduled, %d running", err, len(list), countPods(list, scheduledPod), countPods(list, runningPod))
	}
	return at, nil
}

func scheduledPod(p *corev1.Pod) bool { return p.Spec.NodeName != "" }
func runningPod(p *corev1.Pod) bool   { return p.Status.Phase == corev1.PodRunning }

func countPods(pods []*corev1.Pod, pred func(*corev1.Pod) bool) int {
	n := 0
	for _, p := range pods {
		if pred(p) {
			n++
		}
	}
	return n
}

// loadDeployment is one of the Deployments: labelled and from a registry that the demo's
// workload-policy allows, so every Pod passes its admission modules.
func loadDeployment(i int) *appsv1.Deployment {
	name := fmt.Sprintf("load-%d", i)
	labels := map[string]string{"app": name, "team": "bench"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](workloadReplicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
}

func (r *Report) workloadSection(b *strings.Builder) {
	wl := r.Workloads
	if wl == nil {
		return
	}
	fmt.Fprintf(b, `## Workloads: %d Pods on simulated nodes

One `+"`up`"+` of the demo profile with %d simulated nodes (kwok; 110 pods each) instead of 3: its
kube-scheduler, kube-controller-manager and admission modules (workload-policy checks every Pod).
Each round creates %d Deployments of %d replicas in a new namespace and follows their Pods (an
informer, checked every 20 ms): the time from the first create until every Pod is **scheduled**
(bound to a node), until every Pod is **Running**, and from deleting the Deployments until every
Pod is **gone**. %d rounds.

`, wl.Pods, wl.Nodes, workloadDeployments, workloadReplicas, len(wl.Running))
	tableHead(b, "Pods", "scheduled (s)", "Running (s)", "gone after delete (s)")
	row(b, fmt.Sprint(wl.Pods), wl.Scheduled.Format(2), wl.Running.Format(2), wl.Deleted.Format(2))
	fmt.Fprintf(b, "\nTarget (issue 15): %d Pods from Deployments scheduled and Running in ≤ 20 s: %.2f s: %s\n\n",
		wl.Pods, wl.Running.Median(), verdict(wl.Running.Max() <= 20))
}
