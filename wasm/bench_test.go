package wasm

import (
	"context"
	"os"
	"sort"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ConfigMapCreate is the AdmissionRequest the API server sends a webhook for
// `kubectl create configmap demo --from-literal=a=1 --from-literal=b=2`.
func configMapCreate() *admissionv1.AdmissionRequest {
	obj := []byte(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"demo","namespace":"default","creationTimestamp":null,` +
		`"managedFields":[{"manager":"kubectl-create","operation":"Update","apiVersion":"v1","time":"2026-11-26T12:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:data":{".":{},"f:a":{},"f:b":{}}}}]},` +
		`"data":{"a":"1","b":"2"}}`)
	return &admissionv1.AdmissionRequest{
		UID:             "705ab4f5-6393-11e8-b7cc-42010a800002",
		Kind:            metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"},
		Resource:        metav1.GroupVersionResource{Version: "v1", Resource: "configmaps"},
		RequestKind:     &metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"},
		RequestResource: &metav1.GroupVersionResource{Version: "v1", Resource: "configmaps"},
		Name:            "demo",
		Namespace:       "default",
		Operation:       admissionv1.Create,
		UserInfo:        authenticationv1.UserInfo{Username: "kubernetes-admin", Groups: []string{"system:masters", "system:authenticated"}},
		Object:          runtime.RawExtension{Raw: obj},
		DryRun:          new(bool),
		Options:         runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"kubectl-create"}`)},
	}
}

// BenchmarkAdmitMagicValidate calls examples/magic-validate with a ConfigMap AdmissionReview,
// with the timeout and memory limit enforced, and reports p50 and p99 per call:
//
//	go test ./wasm -run '^$' -bench BenchmarkAdmitMagicValidate -benchtime 2000x
//
// pooled/metered is the default; the other rows are the baselines measured in the same run.
func BenchmarkAdmitMagicValidate(b *testing.B) {
	bin, err := os.ReadFile("../examples/magic-validate/magic-validate.wasm")
	if err != nil {
		b.Fatal(err)
	}
	rows := []struct {
		name string
		cfg  ModuleConfig
	}{
		{"pooled/metered", ModuleConfig{Isolation: Pooled, Interrupt: InterruptMetered}},
		{"pooled/none", ModuleConfig{Isolation: Pooled, Interrupt: InterruptNone}},
		{"fresh/metered", ModuleConfig{Isolation: Fresh, Interrupt: InterruptMetered}},
	}
	r := newRuntime(b)
	req := configMapCreate()
	for _, row := range rows {
		b.Run(row.name, func(b *testing.B) {
			cfg := row.cfg
			cfg.Name, cfg.PoolSize, cfg.Timeout, cfg.MemoryLimit = "magic-validate", 1, benchTimeout(b), 64<<20
			m, err := r.Load(context.Background(), bin, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close(context.Background())
			lat := measureCalls(b, 0, func() {
				res, err := m.Admit(context.Background(), nil, req, false)
				if err != nil || !res.Allowed {
					b.Fatalf("admit: %v %+v", err, res)
				}
			})
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkKubewardenPolicy calls Kubewarden policies (examples/safe-annotations, waPC,
// examples/default-labels, waPC with mutated_object → JSON patch, and examples/unique-ingress-host,
// WASI mode, with an Ingress it decides without a lookup) with the ConfigMap request,
// pooled, with timeout and memory limit enforced; the original-ABI magic-validate call in the
// same run is the baseline:
//
//	go test ./wasm -run '^$' -bench BenchmarkKubewardenPolicy -benchtime 2000x
func BenchmarkKubewardenPolicy(b *testing.B) {
	rows := []struct {
		name, file, settings string
		mutating             bool
		gap                  time.Duration // idle time before each call (not measured)
	}{
		{"waPC/safe-annotations", "safe-annotations", `{"mandatory_annotations":["owner"]}`, false, 0},
		{"waPC/default-labels (mutated_object)", "default-labels", `{"labels":{"owner":"platform"}}`, true, 0},
		{"WASI/unique-ingress-host (no lookup, back to back)", "unique-ingress-host", "", false, 0},
		{"WASI/unique-ingress-host (no lookup, 5ms idle between calls)", "unique-ingress-host", "", false, 5 * time.Millisecond},
		{"wasmkube-ABI/magic-validate (baseline)", "magic-validate", "", false, 0},
	}
	r := newRuntime(b)
	req := configMapCreate()
	for _, row := range rows {
		b.Run(row.name, func(b *testing.B) {
			bin, err := os.ReadFile("../examples/" + row.file + "/" + row.file + ".wasm")
			if err != nil {
				b.Fatal(err)
			}
			cfg := ModuleConfig{Name: row.file, PoolSize: 1, Timeout: 2 * time.Second, MemoryLimit: 64 << 20}
			var call func(ctx context.Context) (*AdmissionResult, error)
			if row.file == "magic-validate" {
				cfg.Exports = []string{ExportValidate}
				m, err := r.Load(context.Background(), bin, cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close(context.Background())
				call = func(ctx context.Context) (*AdmissionResult, error) { return m.Admit(ctx, nil, req, false) }
			} else {
				p, err := r.LoadPolicy(context.Background(), bin, PolicyConfig{Module: cfg, Settings: []byte(row.settings)})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close(context.Background())
				call = func(ctx context.Context) (*AdmissionResult, error) { return p.Admit(ctx, req, row.mutating) }
				if p.Mode() == ModeWASI { // an Ingress without hosts: decided without a host call
					ingress := *req
					ingress.Object = runtime.RawExtension{Raw: []byte(`{"kind":"Ingress","apiVersion":"networking.k8s.io/v1","spec":{}}`)}
					call = func(ctx context.Context) (*AdmissionResult, error) { return p.Admit(ctx, &ingress, false) }
				}
			}
			lat := measureCalls(b, row.gap, func() {
				if _, err := call(context.Background()); err != nil {
					b.Fatal(err)
				}
			})
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// measureCalls warms call up (an instance's heap grows to a steady size), then times b.N calls,
// each after gap of idle time, and returns the sorted latencies.
func measureCalls(b *testing.B, gap time.Duration, call func()) []time.Duration {
	for i := 0; i < 20; i++ {
		call()
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		time.Sleep(gap)
		began := time.Now()
		call()
		lat = append(lat, time.Since(began))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat
}

// benchTimeout is the call timeout of the benchmarks: 2 s, or WASMKUBE_BENCH_TIMEOUT (a
// duration) when the calls run under an instruction counter (scripts/bench-wasm-compare).
func benchTimeout(b *testing.B) time.Duration {
	v := os.Getenv("WASMKUBE_BENCH_TIMEOUT")
	if v == "" {
		return 2 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		b.Fatalf("WASMKUBE_BENCH_TIMEOUT=%q: %v", v, err)
	}
	return d
}
