package kubewarden_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	_ "github.com/open-policy-agent/opa/v1/features/wasm" // OPA's own wasm evaluator, for comparison
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
)

// BenchmarkRegoEvaluators evaluates examples/required-labels (Gatekeeper mode, one violation, a
// sprintf on the host) for a Namespace request three ways: wasmkube's host of the compiled
// module (pooled, metered, memory-capped: what `up` runs), OPA's own wasm evaluator (rego.Target
// "wasm", on wazero without those bounds) and OPA's Go interpreter (topdown), the baseline, all in
// the same run; docs/rationale.md ("Rego on our own host") reads them:
//
//	go test ./wasm/kubewarden -run '^$' -bench BenchmarkRegoEvaluators -benchtime 2000x
func BenchmarkRegoEvaluators(b *testing.B) {
	src, err := os.ReadFile("../../examples/required-labels/policy.rego")
	if err != nil {
		b.Fatal(err)
	}
	settings := json.RawMessage(`{"labels":["owner"],"allowedValues":{"env":["dev","staging","prod"]}}`)
	req := namespace(`{"env":"dev"}`)
	input := map[string]any{}
	raw, _ := json.Marshal(map[string]any{"parameters": settings, "review": req})
	_ = json.Unmarshal(raw, &input)
	want := 1 // violation: no owner label

	b.Run("wasmkube host (pooled, metered)", func(b *testing.B) {
		p, err := kubewarden.Load(context.Background(), wasmtest.Runtime(b), example(b, "required-labels"), kubewarden.PolicyConfig{
			Module: wasm.ModuleConfig{Name: "required-labels", PoolSize: 1}, Settings: settings,
		})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close(context.Background())
		wasmtest.MeasureCalls(b, 0, func() {
			res, err := p.Admit(context.Background(), &admissionv1.AdmissionReview{Request: req}, false)
			if err != nil || res.Allowed {
				b.Fatalf("%+v %v", res, err)
			}
		})
	})
	for _, target := range []string{"wasm", "rego"} {
		name := map[string]string{"wasm": "OPA's wasm evaluator (rego.Target wasm)", "rego": "OPA's Go interpreter (topdown, baseline)"}[target]
		b.Run(name, func(b *testing.B) {
			pq, err := rego.New(rego.Query("data.policy.violation"), rego.Module("policy.rego", string(src)), rego.Target(target)).
				PrepareForEval(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			wasmtest.MeasureCalls(b, 0, func() {
				rs, err := pq.Eval(context.Background(), rego.EvalInput(input))
				if err != nil || len(rs) != 1 || len(rs[0].Expressions[0].Value.([]any)) != want {
					b.Fatalf("%v %v", rs, err)
				}
			})
		})
	}
}
