package hook

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/wasmkube/wasmkube/wasm"
)

// allowAll is an Admitter that allows everything without a module: what the plugin's own
// machinery costs (matching, conversion, the AdmissionReview, the decision).
type allowAll struct{}

func (allowAll) Name() string { return "allow-all" }
func (allowAll) Admit(_ context.Context, review *admissionv1.AdmissionReview, _ bool) (*admissionv1.AdmissionResponse, error) {
	return &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}, nil
}

// BenchmarkAdmissionPlugin sends ConfigMap creates (internal objects, as the API server hands
// them to admission) through the plugin's validating phase and reports p50 and p99 per request:
//
//	go test ./wasm/hook -run '^$' -bench BenchmarkAdmissionPlugin -benchtime 2000x
//
// Rows: magic-validate, the demo's validating module as `up` loads it (pooled, metered,
// default pool size); the same with the CPU caches cold (8 MiB written between requests, as the
// API server's own work on a request evicts the module's code and memory from them); allow-all,
// the plugin without a module.
func BenchmarkAdmissionPlugin(b *testing.B) {
	bin, err := os.ReadFile("../../examples/magic-validate/magic-validate.wasm")
	if err != nil {
		b.Fatal(err)
	}
	rt, err := wasm.NewRuntime(context.Background(), wasm.RuntimeConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close(context.Background()) })
	m, err := rt.Load(context.Background(), bin, wasm.ModuleConfig{Name: "magic-validate"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close(context.Background()) })
	rows := []struct {
		name     string
		admitter Admitter
		evict    int
	}{
		{"magic-validate", Envelope(Module{Module: m}), 0},
		{"magic-validate/cold", Envelope(Module{Module: m}), 8 << 20},
		{"allow-all", allowAll{}, 0},
	}
	for _, row := range rows {
		b.Run(row.name, func(b *testing.B) {
			a, _ := newPlugin(b, []*corev1.Namespace{testNamespace("default", nil)},
				AdmissionModule{Admitter: row.admitter, Rules: createOnly})
			data := map[string]string{"a": "1", "b": "2"}
			measure(b, row.evict, func() {
				attr := createCM("default", "demo", nil, data).attributes()
				if err := a.Validate(context.Background(), attr, pluginObjects); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// measure warms call up, then times b.N calls, each after writing evict bytes (untimed), and
// reports p50 and p99.
func measure(b *testing.B, evict int, call func()) {
	for range 20 {
		call()
	}
	lat := make([]time.Duration, 0, b.N)
	junk := make([]byte, evict)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for i := 0; i < len(junk); i += 64 {
			junk[i]++
		}
		b.StartTimer()
		began := time.Now()
		call()
		lat = append(lat, time.Since(began))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}
