package wasmkube_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/hook"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
)

// testUngrantedPolicyRefused: Up refuses a Kubewarden policy whose metadata asks for more than
// its entry grants, before anything starts, and prints the profile lines that would grant it.
func testUngrantedPolicyRefused(t *testing.T) {
	p, err := profiles.Parse([]byte(`apiVersion: wasmkube.dev/v1alpha1
kind: Profile
name: ungranted
controllers: {enabled: false}
admission:
  modules:
  - module: builtin:unique-ingress-host
    type: kubewarden
    grants:
      contextAwareResources: [{apiVersion: v1, kind: Service}]
`), "ungranted.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	_, err = wasmkube.Up(context.Background(), p, wasmkube.Options{BuiltinModules: examples.FS(), DataDir: dataDir, Port: ptr.To[int32](0), ModuleCacheDir: t.TempDir()})
	if err == nil {
		t.Fatal("Up started a policy that asks for more than it is granted")
	}
	for _, want := range []string{
		"profile ungranted: admission.modules[0] (unique-ingress-host): the policy's metadata asks for more than its entry grants",
		"\n    grants:\n      contextAwareResources:\n      - apiVersion: networking.k8s.io/v1\n        kind: Ingress",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
		t.Errorf("Up wrote %v before refusing: the check must come first", entries)
	}
}

// grantedHost is a Kubewarden host connected to the package's cluster (through the admin's
// client, as the admission plugin's is), for one policy granted kinds.
func grantedHost(t *testing.T, grants kubewarden.PolicyGrants) kubewarden.KubernetesHost {
	t.Helper()
	c := kubernetes.NewForConfigOrDie(cluster.RESTConfig)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	host := hook.NewKubernetesHost()
	host.Connect(dynamic.NewForConfigOrDie(rest.CopyConfig(cluster.RESTConfig)),
		restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Discovery())), nil, stop)
	return host.ForPolicy("granted-test", grants)
}

// testGrantedReadsOnly: a policy's host, built on the admin's client, reads only what the
// policy was granted from the real API server, even when asked directly (the policy's own
// check bypassed): a ConfigMap that exists and Secrets are refused, Ingresses are listed.
func testGrantedReadsOnly(t *testing.T) {
	ctx := context.Background()
	h := grantedHost(t, kubewarden.PolicyGrants{ContextAwareResources: []kubewarden.ContextAwareResource{{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"}}})
	// A ConfigMap that exists (the API server's client CA), from the cache and directly.
	for _, payload := range []string{
		`{"api_version":"v1","kind":"ConfigMap","name":"extension-apiserver-authentication","namespace":"kube-system"}`,
		`{"api_version":"v1","kind":"ConfigMap","name":"extension-apiserver-authentication","namespace":"kube-system","disable_cache":true}`,
	} {
		out, err := h.Kubernetes(ctx, "get_resource", []byte(payload))
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "policy granted-test may not read /v1, Resource=configmaps: not granted") {
			t.Errorf("get a ConfigMap (%s): %.100s %v, want Forbidden", payload, out, err)
		}
	}
	if out, err := h.Kubernetes(ctx, "list_resources_all", []byte(`{"api_version":"v1","kind":"Secret"}`)); !apierrors.IsForbidden(err) {
		t.Errorf("list Secrets: %.100s %v, want Forbidden", out, err)
	}
	out, err := h.Kubernetes(ctx, "list_resources_all", []byte(`{"api_version":"networking.k8s.io/v1","kind":"Ingress"}`))
	if err != nil || !strings.Contains(string(out), `"kind":"IngressList"`) {
		t.Errorf("list Ingresses (granted): %.200s %v", out, err)
	}
	if _, err := h.Kubernetes(ctx, "can_i", []byte(`{"subject_access_review":{"user":"u","resource_attributes":{"verb":"get","resource":"secrets"}}}`)); err == nil || !strings.Contains(err.Error(), "not granted kubernetes/can_i") {
		t.Errorf("can_i (not granted): %v", err)
	}
}

// testLookupVersions: the same HorizontalPodAutoscaler read from the cache as autoscaling/v1
// and as autoscaling/v2 comes back in each version's shape.
func testLookupVersions(t *testing.T) {
	ctx := context.Background()
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "versions"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "none"},
			MinReplicas:    ptr.To[int32](1), MaxReplicas: 3,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](70)}}}},
		},
	}
	if _, err := client(t).AutoscalingV2().HorizontalPodAutoscalers("default").Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h := grantedHost(t, kubewarden.PolicyGrants{ContextAwareResources: []kubewarden.ContextAwareResource{
		{APIVersion: "autoscaling/v1", Kind: "HorizontalPodAutoscaler"}, {APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"}}})
	type read struct {
		APIVersion string `json:"apiVersion"`
		Metadata   struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Spec map[string]json.RawMessage `json:"spec"`
	}
	get := func(version string) (read, error) {
		var r read
		out, err := h.Kubernetes(ctx, "get_resource", []byte(fmt.Sprintf(`{"api_version":"autoscaling/%s","kind":"HorizontalPodAutoscaler","name":"versions","namespace":"default"}`, version)))
		if err == nil {
			err = json.Unmarshal(out, &r)
		}
		return r, err
	}
	// The controllers update the HPA's status: compare two reads of one resourceVersion.
	var v1, v2 read
	poll(t, "reads of one resourceVersion in both versions", func(context.Context) (bool, error) {
		var err error
		if v1, err = get("v1"); err != nil {
			return false, err
		}
		if v2, err = get("v2"); err != nil {
			return false, err
		}
		return v1.Metadata.ResourceVersion == v2.Metadata.ResourceVersion, nil
	})
	if _, ok := v1.Spec["targetCPUUtilizationPercentage"]; v1.APIVersion != "autoscaling/v1" || !ok {
		t.Errorf("read as v1: %s %v", v1.APIVersion, v1.Spec)
	}
	if _, ok := v2.Spec["metrics"]; v2.APIVersion != "autoscaling/v2" || !ok {
		t.Errorf("read as v2 after v1: %s %v, want the v2 shape", v2.APIVersion, v2.Spec)
	}
}

// testDenyStands: an authorization module answering allowed and denied both true denies,
// under failurePolicy NoOpinion too; magic-authz after it, which allows magic-group to read
// ConfigMaps, is not asked.
func testDenyStands(t *testing.T) {
	ctx := context.Background()
	as := func(name string) kubernetes.Interface {
		cfg := rest.CopyConfig(cluster.RESTConfig)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: name, Groups: []string{"magic-group"}}
		return kubernetes.NewForConfigOrDie(cfg)
	}
	if _, err := as("someone").CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("magic-group reading ConfigMaps (magic-authz allows): %v", err)
	}
	_, err := as("conflicted").CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "the faults module allows and denies") {
		t.Errorf("allowed and denied both true: %v, want Forbidden with the module's reason", err)
	}
}

// testTokenNeverLogged: an authentication module that writes the token it is sent to stderr
// and exits fails the request, and the token does not reach the server's log.
func testTokenNeverLogged(t *testing.T) {
	const token = "canary-token-4f1d9b2c7e"
	cfg := rest.AnonymousClientConfig(cluster.RESTConfig)
	cfg.BearerToken = token
	_, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
	if !apierrors.IsUnauthorized(err) {
		t.Fatalf("an unknown token: %v, want Unauthorized", err)
	}
	waitForLog(t, "echo-token's failure", func(log string) bool {
		return strings.Contains(log, "giving up on token "+envelope.Redacted)
	})
	b, err := os.ReadFile(filepath.Join(cluster.DataDir, "logs", "kube.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), token) {
		t.Errorf("the token is in logs/kube.log")
	}
}
