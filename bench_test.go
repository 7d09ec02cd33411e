package wasmkube_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/hook"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
)

// BenchmarkKubewardenLookup measures a context-aware policy's lookups against the package's
// in-process cluster (50 Ingresses): get_resource and list_resources_all answered from the
// host's informer cache, the same calls with disable_cache (a request to the API server over
// loopback HTTPS, the baseline), and a whole call of the WASI-mode policy unique-ingress-host,
// which lists every Ingress (a fresh instance per call, as Kubewarden's WASI mode requires):
//
//	go test . -run '^$' -bench BenchmarkKubewardenLookup -benchtime 1000x
func BenchmarkKubewardenLookup(b *testing.B) {
	ctx := context.Background()
	ns := "bench-lookup"
	c := kubernetes.NewForConfigOrDie(cluster.RESTConfig)
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	for i := range 50 {
		ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("i%d", i)},
			Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: fmt.Sprintf("h%d.bench.example.com", i)}}}}
		if _, err := c.NetworkingV1().Ingresses(ns).Create(ctx, ing, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	stop := make(chan struct{})
	defer close(stop)
	host := hook.NewKubernetesHost()
	cfg := rest.CopyConfig(cluster.RESTConfig)
	cfg.QPS, cfg.Burst = -1, 0 // measure the server, not client-side rate limiting
	host.Connect(dynamic.NewForConfigOrDie(cfg),
		restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Discovery())), nil, stop)
	grants := kubewarden.PolicyGrants{ContextAwareResources: []kubewarden.ContextAwareResource{{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"}}}
	policyHost := host.ForPolicy("unique-ingress-host", grants)

	get := func(disable bool) []byte {
		return []byte(fmt.Sprintf(`{"api_version":"networking.k8s.io/v1","kind":"Ingress","namespace":%q,"name":"i7","disable_cache":%v}`, ns, disable))
	}
	list := func(disable bool) []byte {
		return []byte(fmt.Sprintf(`{"api_version":"networking.k8s.io/v1","kind":"Ingress","disable_cache":%v}`, disable))
	}
	rows := []struct {
		name, op string
		payload  []byte
	}{
		{"get_resource/cache", "get_resource", get(false)},
		{"get_resource/direct", "get_resource", get(true)},
		{"list_resources_all/cache", "list_resources_all", list(false)},
		{"list_resources_all/direct", "list_resources_all", list(true)},
	}
	for _, row := range rows {
		b.Run(row.name, func(b *testing.B) {
			report(b, func() {
				if _, err := policyHost.Kubernetes(ctx, row.op, row.payload); err != nil {
					b.Fatal(err)
				}
			})
		})
	}

	b.Run("policy/unique-ingress-host (WASI, list all)", func(b *testing.B) {
		rt, err := wasm.NewRuntime(ctx, wasm.RuntimeConfig{})
		if err != nil {
			b.Fatal(err)
		}
		defer rt.Close(ctx)
		bin, _ := examples.Module("unique-ingress-host")
		p, err := kubewarden.Load(ctx, rt, bin, kubewarden.PolicyConfig{Module: wasm.ModuleConfig{Name: "unique-ingress-host"}, Kubernetes: policyHost, Grants: grants})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close(ctx)
		obj, _ := json.Marshal(map[string]any{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
			"metadata": map[string]any{"name": "new"}, "spec": map[string]any{"rules": []any{map[string]any{"host": "h7.bench.example.com"}}}})
		req := &admissionv1.AdmissionRequest{UID: "u", Operation: admissionv1.Create, Namespace: ns, Name: "new", Object: runtime.RawExtension{Raw: obj}}
		report(b, func() {
			res, err := p.Admit(ctx, &admissionv1.AdmissionReview{Request: req}, false)
			if err != nil || res.Allowed {
				b.Fatalf("want the clash found: %+v %v", res, err)
			}
		})
	})
}

// report warms call up, times b.N calls and reports p50 and p99 in µs.
func report(b *testing.B, call func()) {
	for range 10 {
		call()
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		began := time.Now()
		call()
		lat = append(lat, time.Since(began))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
