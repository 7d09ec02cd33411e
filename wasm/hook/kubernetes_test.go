package hook

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wasmkube/wasmkube/wasm/kubewarden"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// TestKubernetesHostCanI answers can_i with the authorizer it is given (here the API server's
// privileged-groups authorizer) for a policy granted kubernetes/can_i, refuses it to one that
// was not, and refuses calls before it is connected.
func TestKubernetesHostCanI(t *testing.T) {
	k := NewKubernetesHost()
	h := k.ForPolicy("p", kubewarden.PolicyGrants{HostCapabilities: []string{"kubernetes/can_i"}})
	payload := func(group string) []byte {
		return []byte(`{"subject_access_review":{"user":"u","groups":["` + group + `"],"resource_attributes":{"namespace":"default","verb":"create","resource":"pods"}},"disable_cache":false}`)
	}
	if _, err := h.Kubernetes(context.Background(), "can_i", payload("g")); err == nil || !strings.Contains(err.Error(), "still starting") {
		t.Errorf("before connect: %v", err)
	}
	if _, err := h.Kubernetes(context.Background(), "get_resource", []byte(`{"api_version":"v1","kind":"Pod","name":"p"}`)); err == nil || !strings.Contains(err.Error(), "still starting") {
		t.Errorf("get before connect: %v", err)
	}
	k.Connect(nil, nil, authorizerfactory.NewPrivilegedGroups("admins"), nil)
	for group, want := range map[string]string{"admins": `"allowed":true`, "others": `"allowed":false`} {
		out, err := h.Kubernetes(context.Background(), "can_i", payload(group))
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("%s: %s %v, want %s", group, out, err, want)
		}
	}
	if _, err := h.Kubernetes(context.Background(), "delete_everything", []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "unknown operation delete_everything") {
		t.Errorf("unknown operation: %v", err)
	}
	reader := k.ForPolicy("reader", kubewarden.PolicyGrants{ContextAwareResources: []kubewarden.ContextAwareResource{{APIVersion: "v1", Kind: "Pod"}}})
	if _, err := reader.Kubernetes(context.Background(), "can_i", payload("admins")); err == nil || !strings.Contains(err.Error(), "policy reader is not granted kubernetes/can_i") {
		t.Errorf("can_i not granted: %v", err)
	}
}

// testMapper knows Ingresses, Secrets and HorizontalPodAutoscalers (v1 and v2).
func testMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	for _, gvk := range []schema.GroupVersionKind{
		{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
		{Version: "v1", Kind: "Secret"},
		{Group: "autoscaling", Version: "v1", Kind: "HorizontalPodAutoscaler"},
		{Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscaler"},
	} {
		m.Add(gvk, meta.RESTScopeNamespace)
	}
	return m
}

// unreachable is a real dynamic client for a server that does not exist: a call that gets past
// the grants fails to connect; one refused by them never tries.
func unreachable(t *testing.T) dynamic.Interface {
	t.Helper()
	return dynamic.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1", Timeout: 2 * time.Second})
}

// TestPolicyHostReadsOnlyGrantedKinds: a policy's host reads only the kinds it was granted,
// whatever it is asked (the policy's own check bypassed): other kinds are Forbidden before
// the API server is asked, from the cache or directly; a granted kind goes to the server.
func TestPolicyHostReadsOnlyGrantedKinds(t *testing.T) {
	k := NewKubernetesHost()
	stop := make(chan struct{})
	defer close(stop)
	k.Connect(unreachable(t), testMapper(), nil, stop)
	h := k.ForPolicy("ingresses-only", kubewarden.PolicyGrants{ContextAwareResources: []kubewarden.ContextAwareResource{{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"}}})
	ctx := context.Background()
	for _, c := range []struct{ op, payload string }{
		{"get_resource", `{"api_version":"v1","kind":"Secret","name":"s","namespace":"default"}`},
		{"get_resource", `{"api_version":"v1","kind":"Secret","name":"s","namespace":"default","disable_cache":true}`},
		{"list_resources_all", `{"api_version":"v1","kind":"Secret"}`},
		{"list_resources_by_namespace", `{"api_version":"v1","kind":"Secret","namespace":"default","field_selector":"type=Opaque"}`},
	} {
		_, err := h.Kubernetes(ctx, c.op, []byte(c.payload))
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "policy ingresses-only may not read /v1, Resource=secrets: not granted") {
			t.Errorf("%s %s: %v, want Forbidden", c.op, c.payload, err)
		}
	}
	if len(h.informers) != 0 {
		t.Errorf("informers were started for kinds not granted: %v", h.informers)
	}
	_, err := h.Kubernetes(ctx, "get_resource", []byte(`{"api_version":"networking.k8s.io/v1","kind":"Ingress","name":"i","namespace":"default","disable_cache":true}`))
	if err == nil || apierrors.IsForbidden(err) {
		t.Errorf("a granted kind must reach the server (here: none listening): %v", err)
	}
}

// TestGrantedReaderVerbs: the client a policy reads through refuses every verb but get, list
// and watch, on granted resources too, and get of subresources.
func TestGrantedReaderVerbs(t *testing.T) {
	r := newGrantedReader(unreachable(t), testMapper(), "p", []schema.GroupVersionKind{{Version: "v1", Kind: "Secret"}})
	secrets := r.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}).Namespace("default")
	ctx := context.Background()
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret"}}
	refused := map[string]error{}
	_, refused["create"] = secrets.Create(ctx, obj, metav1.CreateOptions{})
	_, refused["update"] = secrets.Update(ctx, obj, metav1.UpdateOptions{})
	_, refused["updatestatus"] = secrets.UpdateStatus(ctx, obj, metav1.UpdateOptions{})
	refused["delete"] = secrets.Delete(ctx, "s", metav1.DeleteOptions{})
	refused["deletecollection"] = secrets.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_, refused["patch"] = secrets.Patch(ctx, "s", "application/merge-patch+json", []byte(`{}`), metav1.PatchOptions{})
	_, refused["apply"] = secrets.Apply(ctx, "s", obj, metav1.ApplyOptions{})
	_, refused["applystatus"] = secrets.ApplyStatus(ctx, "s", obj, metav1.ApplyOptions{})
	_, refused["get subresource"] = secrets.Get(ctx, "s", metav1.GetOptions{}, "status")
	for verb, err := range refused {
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may only read") {
			t.Errorf("%s: %v, want Forbidden", verb, err)
		}
	}
	if _, err := secrets.List(ctx, metav1.ListOptions{}); err == nil || apierrors.IsForbidden(err) {
		t.Errorf("list of a granted resource must reach the server: %v", err)
	}
}

// TestEncodeKeysByResource: the same object (UID and resourceVersion) read through two
// versions keeps one JSON per version: a HorizontalPodAutoscaler read as autoscaling/v2 after
// autoscaling/v1 is not answered in the v1 shape.
func TestEncodeKeysByResource(t *testing.T) {
	k := NewKubernetesHost()
	hpa := func(apiVersion string, spec map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": apiVersion, "kind": "HorizontalPodAutoscaler",
			"metadata": map[string]any{"name": "web", "namespace": "default", "uid": "u-1", "resourceVersion": "7"},
			"spec":     spec,
		}}
	}
	v1 := schema.GroupVersionResource{Group: "autoscaling", Version: "v1", Resource: "horizontalpodautoscalers"}
	v2 := v1
	v2.Version = "v2"
	for _, c := range []struct {
		gvr  schema.GroupVersionResource
		obj  *unstructured.Unstructured
		want string
	}{
		{v1, hpa("autoscaling/v1", map[string]any{"targetCPUUtilizationPercentage": int64(80)}), "autoscaling/v1"},
		{v2, hpa("autoscaling/v2", map[string]any{"metrics": []any{}}), "autoscaling/v2"},
		{v1, hpa("autoscaling/v1", map[string]any{"targetCPUUtilizationPercentage": int64(80)}), "autoscaling/v1"},
	} {
		b, err := k.encode(c.gvr, c.obj)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ APIVersion string }
		if err := json.Unmarshal(b, &got); err != nil || got.APIVersion != c.want {
			t.Errorf("read through %s: %s, want %s", c.gvr.Version, b, c.want)
		}
	}
	k.forget(v2, hpa("autoscaling/v2", nil))
	if _, ok := k.encoded.Load(encodedKey{"u-1", v2}); ok {
		t.Error("a deleted object's JSON is kept")
	}
	if _, ok := k.encoded.Load(encodedKey{"u-1", v1}); !ok {
		t.Error("forgetting the v2 JSON dropped the v1 one (the v1 informer has not seen a delete)")
	}
}
