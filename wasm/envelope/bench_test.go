package envelope_test

import (
	"context"
	"os"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
)

// BenchmarkAdmitMagicValidate calls examples/magic-validate with a ConfigMap AdmissionReview
// (envelope.Admit: the call and the check of its answer), with the timeout and memory limit
// enforced, and reports p50 and p99 per call:
//
//	go test ./wasm/envelope -run '^$' -bench BenchmarkAdmitMagicValidate -benchtime 2000x
//
// pooled/metered is the default; the other rows are the baselines measured in the same run, and
// rust/pooled/metered is examples/magic-validate-rust, the same rule without Go's runtime.
// (Before the wasm package was split by ABI, this benchmark was in ./wasm; scripts/bench-wasm-compare
// finds it in either.)
func BenchmarkAdmitMagicValidate(b *testing.B) {
	goBin, err := os.ReadFile("../../examples/magic-validate/magic-validate.wasm")
	if err != nil {
		b.Fatal(err)
	}
	rustBin, err := os.ReadFile("../../examples/magic-validate-rust/magic-validate-rust.wasm")
	if err != nil {
		b.Fatal(err)
	}
	rows := []struct {
		name string
		bin  []byte
		cfg  wasm.ModuleConfig
	}{
		{"pooled/metered", goBin, wasm.ModuleConfig{Isolation: wasm.Pooled, Interrupt: wasm.InterruptMetered}},
		{"pooled/none", goBin, wasm.ModuleConfig{Isolation: wasm.Pooled, Interrupt: wasm.InterruptNone}},
		{"fresh/metered", goBin, wasm.ModuleConfig{Isolation: wasm.Fresh, Interrupt: wasm.InterruptMetered}},
		{"rust/pooled/metered", rustBin, wasm.ModuleConfig{Isolation: wasm.Pooled, Interrupt: wasm.InterruptMetered}},
	}
	r := wasmtest.Runtime(b)
	req := wasmtest.ConfigMapCreate()
	for _, row := range rows {
		b.Run(row.name, func(b *testing.B) {
			cfg := row.cfg
			cfg.Name, cfg.PoolSize, cfg.Timeout, cfg.MemoryLimit = "magic-validate", 1, benchTimeout(b), 64<<20
			m, err := r.Load(context.Background(), row.bin, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close(context.Background())
			wasmtest.MeasureCalls(b, 0, func() {
				res, err := envelope.Admit(context.Background(), m, nil, &admissionv1.AdmissionReview{Request: req}, false)
				if err != nil || !res.Allowed {
					b.Fatalf("admit: %v %+v", err, res)
				}
			})
		})
	}
}

// benchTimeout is the call timeout of the benchmarks: 2 s, or WASMKUBE_BENCH_TIMEOUT (a
// duration) when the calls run under an instruction counter (scripts/bench-wasm-instructions).
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
