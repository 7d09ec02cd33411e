package kubewarden_test

import (
	"context"
	"os"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
)

// BenchmarkKubewardenPolicy calls Kubewarden policies (examples/safe-annotations, waPC,
// examples/default-labels, waPC with mutated_object → JSON patch, and examples/unique-ingress-host,
// WASI mode, with an Ingress it decides without a lookup) with the ConfigMap request,
// pooled, with timeout and memory limit enforced; the envelope-ABI magic-validate call in the
// same run is the baseline:
//
//	go test ./wasm/kubewarden -run '^$' -bench BenchmarkKubewardenPolicy -benchtime 2000x
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
	r := wasmtest.Runtime(b)
	req := wasmtest.ConfigMapCreate()
	for _, row := range rows {
		b.Run(row.name, func(b *testing.B) {
			bin, err := os.ReadFile("../../examples/" + row.file + "/" + row.file + ".wasm")
			if err != nil {
				b.Fatal(err)
			}
			cfg := wasm.ModuleConfig{Name: row.file, PoolSize: 1, Timeout: 2 * time.Second, MemoryLimit: 64 << 20}
			var call func(ctx context.Context) (*admissionv1.AdmissionResponse, error)
			if row.file == "magic-validate" {
				cfg.Exports = []string{envelope.ExportValidate}
				m, err := r.Load(context.Background(), bin, cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer m.Close(context.Background())
				call = func(ctx context.Context) (*admissionv1.AdmissionResponse, error) {
					return envelope.Admit(ctx, m, nil, &admissionv1.AdmissionReview{Request: req}, false)
				}
			} else {
				p, err := kubewarden.Load(context.Background(), r, bin, kubewarden.PolicyConfig{Module: cfg, Settings: []byte(row.settings)})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close(context.Background())
				call = func(ctx context.Context) (*admissionv1.AdmissionResponse, error) {
					return p.Admit(ctx, &admissionv1.AdmissionReview{Request: req}, row.mutating)
				}
				if p.Mode() == kubewarden.ModeWASI { // an Ingress without hosts: decided without a host call
					ingress := *req
					ingress.Object = runtime.RawExtension{Raw: []byte(`{"kind":"Ingress","apiVersion":"networking.k8s.io/v1","spec":{}}`)}
					call = func(ctx context.Context) (*admissionv1.AdmissionResponse, error) {
						return p.Admit(ctx, &admissionv1.AdmissionReview{Request: &ingress}, false)
					}
				}
			}
			wasmtest.MeasureCalls(b, row.gap, func() {
				if _, err := call(context.Background()); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
