// Package wasmtest holds what the tests of the ABI packages (envelope, kubewarden, hook) share:
// the faults test module, an empty module to name errors, the benchmarks' request and timing.
// The core package's tests do not use it: it imports k8s.io.
package wasmtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/wasmkube/wasmkube/wasm"
)

var faults struct {
	once sync.Once
	bin  []byte
	err  error
}

// Faults is the test module of wasm/testdata/faults, built once per test binary.
func Faults(tb testing.TB) []byte {
	tb.Helper()
	faults.once.Do(func() { faults.bin, faults.err = buildFaults() })
	if faults.err != nil {
		tb.Fatal(faults.err)
	}
	return faults.bin
}

func buildFaults() ([]byte, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("find the module root: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	dir, err := os.MkdirTemp("", "wasmtest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "faults.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./wasm/testdata/faults")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the faults test module: %v\n%s", err, b)
	}
	return os.ReadFile(out)
}

// Empty is an empty WebAssembly module.
var Empty = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}

// Runtime is a runtime closed when tb ends, with the tests' compilation cache.
func Runtime(tb testing.TB) *wasm.Runtime {
	tb.Helper()
	r, err := wasm.NewRuntime(context.Background(), wasm.RuntimeConfig{CacheDir: filepath.Join(os.TempDir(), "wasmkube-test-cache")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close(context.Background()) })
	return r
}

// Load loads bin into r with cfg; the module is closed when tb ends.
func Load(tb testing.TB, r *wasm.Runtime, bin []byte, cfg wasm.ModuleConfig) *wasm.Module {
	tb.Helper()
	m, err := r.Load(context.Background(), bin, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// Named is a module named name that exports nothing, for what needs a *wasm.Module only to
// name it in errors (the decision and answer-checking functions).
func Named(tb testing.TB, name string) *wasm.Module {
	tb.Helper()
	return Load(tb, Runtime(tb), Empty, wasm.ModuleConfig{Name: name, PoolSize: 1})
}

// ConfigMapCreate is the AdmissionRequest the API server sends a webhook for
// `kubectl create configmap demo --from-literal=a=1 --from-literal=b=2`.
func ConfigMapCreate() *admissionv1.AdmissionRequest {
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

// MeasureCalls warms call up (an instance's heap grows to a steady size), then times b.N calls,
// each after gap of idle time, and reports the p50 and p99 latency.
func MeasureCalls(b *testing.B, gap time.Duration, call func()) {
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
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// WantCallError fails t unless err is a *wasm.CallError of module, export and kind.
func WantCallError(t testing.TB, err error, module, export string, kind wasm.ErrorKind) {
	t.Helper()
	var ce *wasm.CallError
	if !errors.As(err, &ce) || ce.Module != module || ce.Export != export || ce.Kind != kind {
		t.Fatalf("error %v (%T), want a %s CallError of module %s export %s", err, err, kind, module, export)
	}
}
