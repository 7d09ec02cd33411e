package hook

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/token/cache"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

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

// BenchmarkAuthnAuthz measures what a request's authentication by magic-authn and its
// authorization by magic-authz cost, as the API server makes them (modules as `up` loads them),
// without and with the caches `up` puts in front of them (authentication: successes for
// 10s, k8s.io/apiserver's token cache; authorization: CacheTTL 10s):
//
//	go test ./wasm/hook -run '^$' -bench BenchmarkAuthnAuthz -benchtime 2000x
func BenchmarkAuthnAuthz(b *testing.B) {
	rt, err := wasm.NewRuntime(context.Background(), wasm.RuntimeConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close(context.Background()) })
	loadExample := func(name string) Module {
		bin, err := os.ReadFile("../../examples/" + name + "/" + name + ".wasm")
		if err != nil {
			b.Fatal(err)
		}
		m, err := rt.Load(context.Background(), bin, wasm.ModuleConfig{Name: name})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close(context.Background()) })
		return Module{Module: m}
	}
	authn := &TokenAuthenticator{Modules: []Module{loadExample("magic-authn")}, APIAudiences: []string{"api"}}
	authz := AuthzModule{Module: loadExample("magic-authz")}
	attrs := authorizer.AttributesRecord{User: &user.DefaultInfo{Name: "magic-user", Groups: []string{"magic-group", user.AllAuthenticated}},
		Verb: "create", Namespace: "default", Resource: "configmaps", APIVersion: "v1", ResourceRequest: true}
	authenticate := func(a authenticator.Token) func() {
		return func() {
			if _, ok, err := a.AuthenticateToken(context.Background(), "magic-token"); !ok || err != nil {
				b.Fatalf("authenticate: %v %v", ok, err)
			}
		}
	}
	authorize := func(a *Authorizer) func() {
		return func() {
			if d, _, err := a.Authorize(context.Background(), attrs); d != authorizer.DecisionAllow || err != nil {
				b.Fatalf("authorize: %v %v", d, err)
			}
		}
	}
	rows := []struct {
		name string
		call func()
	}{
		{"authn/module", authenticate(authn)},
		{"authn/cached", authenticate(cache.New(authn, false, 10*time.Second, 0))},
		{"authz/module", authorize(&Authorizer{Modules: []AuthzModule{authz}})},
		{"authz/cached", authorize(&Authorizer{Modules: []AuthzModule{authz}, CacheTTL: 10 * time.Second})},
	}
	for _, row := range rows {
		b.Run(row.name, func(b *testing.B) { measure(b, 0, row.call) })
	}
}
