package cli

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// workloadManifests are what a user tries on the demo: a Deployment, a Job and a DaemonSet that
// workload-policy admits, and a Deployment whose Pod template lacks the team label: the
// Deployment and its ReplicaSet are admitted, its Pods are not.
const workloadManifests = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: wl-web, labels: {team: a}}
spec:
  replicas: 3
  selector: {matchLabels: {app: wl-web}}
  template:
    metadata: {labels: {app: wl-web, team: a}}
    spec:
      containers: [{name: web, image: ghcr.io/acme/web:1.0}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: wl-pi, labels: {team: a}}
spec:
  template:
    metadata: {labels: {team: a}}
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: ghcr.io/acme/pi:1.0}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: wl-agent, labels: {team: a}}
spec:
  selector: {matchLabels: {app: wl-agent}}
  template:
    metadata: {labels: {app: wl-agent, team: a}}
    spec:
      containers: [{name: agent, image: registry.k8s.io/pause:3.10}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: wl-api, labels: {team: a}}
spec:
  replicas: 2
  selector: {matchLabels: {app: wl-api}}
  template:
    metadata: {labels: {app: wl-api}}
    spec:
      containers: [{name: api, image: ghcr.io/acme/api:1.0}]
`

// testWorkloads runs workloads on the demo's scheduler and simulated nodes, with kubectl.
func testWorkloads(t *testing.T, e *env) {
	must := func(args ...string) string {
		t.Helper()
		code, out, stderr := e.run(append([]string{"kubectl"}, args...)...)
		if code != 0 {
			t.Fatalf("kubectl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, stderr)
		}
		return out
	}
	nodes := strings.Fields(must("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`))
	if want := []string{"demo-node-0=True", "demo-node-1=True", "demo-node-2=True"}; !slices.Equal(nodes, want) {
		t.Fatalf("nodes: %v, want %v", nodes, want)
	}
	manifests := filepath.Join(e.root, "workloads.yaml")
	if err := os.WriteFile(manifests, []byte(workloadManifests), 0o600); err != nil {
		t.Fatal(err)
	}
	must("apply", "-f", manifests)
	// The bound: a 3-replica Deployment Available within 10 s.
	must("wait", "--for=condition=Available", "deployment/wl-web", "--timeout=10s")
	must("wait", "--for=condition=Complete", "job/wl-pi", "--timeout=30s")
	must("rollout", "status", "daemonset/wl-agent", "--timeout=30s")

	pods := strings.Fields(must("get", "pods", "-l", "app=wl-web", "-o",
		`jsonpath={range .items[*]}{.status.phase}/{.status.podIP}/{.status.containerStatuses[0].ready}/{.status.conditions[?(@.type=="Ready")].status} {end}`))
	if len(pods) != 3 {
		t.Fatalf("wl-web pods: %v, want 3", pods)
	}
	for _, p := range pods {
		f := strings.Split(p, "/")
		if f[0] != "Running" || !strings.HasPrefix(f[1], "10.244.") || f[2] != "true" || f[3] != "True" {
			t.Errorf("wl-web pod phase/IP/container ready/Ready = %s; want Running/10.244.x.y/true/True", p)
		}
	}
	if phase := must("get", "pods", "-l", "job-name=wl-pi", "-o", "jsonpath={.items[*].status.phase}"); phase != "Succeeded" {
		t.Errorf("wl-pi pod phase %q, want Succeeded", phase)
	}
	placed := strings.Fields(must("get", "pods", "-l", "app=wl-agent", "-o", "jsonpath={.items[*].spec.nodeName}"))
	slices.Sort(placed)
	if want := []string{"demo-node-0", "demo-node-1", "demo-node-2"}; !slices.Equal(placed, want) {
		t.Errorf("wl-agent pods on %v, want one on each of %v", placed, want)
	}

	// The ReplicaSet is admitted; the Pods it creates are not, and it says why.
	denial := regexp.MustCompile(`Error creating: admission WASM module "workload-policy" denied the request: Pod wl-api-\S+ lacks required labels: team`)
	var described string
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		described = must("describe", "replicaset", "-l", "app=wl-api")
		return strings.Contains(described, "FailedCreate") && denial.MatchString(described), nil
	}); err != nil {
		t.Fatalf("kubectl describe replicaset does not show the denial:\n%s", described)
	}
	if ready := must("get", "deployment", "wl-api", "-o", "jsonpath={.status.readyReplicas}"); ready != "" {
		t.Errorf("wl-api has %s ready replicas; its Pods were denied", ready)
	}
	// The fix the README shows: the label in the template; a new ReplicaSet's Pods are admitted.
	must("patch", "deployment", "wl-api", "--type=merge", "-p", `{"spec":{"template":{"metadata":{"labels":{"team":"a"}}}}}`)
	must("rollout", "status", "deployment/wl-api", "--timeout=30s")
	if events := must("get", "events", "--field-selector", "reason=FailedCreate"); !denial.MatchString(events) {
		t.Errorf("events lack the denial:\n%s", events)
	}

	must("delete", "deployment", "wl-web")
	must("wait", "--for=delete", "pod", "-l", "app=wl-web", "--timeout=30s")
}
