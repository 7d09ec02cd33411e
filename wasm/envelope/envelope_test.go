package envelope_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
)

func settings(mode string) json.RawMessage { return json.RawMessage(`{"mode":"` + mode + `"}`) }

// faults loads the faults test module into a runtime of its own.
func faults(t *testing.T, cfg wasm.ModuleConfig) *wasm.Module {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "faults"
	}
	return wasmtest.Load(t, faultsRuntime(t, wasm.RuntimeConfig{}), wasmtest.Faults(t), cfg)
}

// faultsRuntime is a runtime with cfg that can load the faults module, closed when t ends: the
// module is a waPC guest too, and imports the waPC host (as the server's runtime has it).
func faultsRuntime(t *testing.T, cfg wasm.RuntimeConfig) *wasm.Runtime {
	t.Helper()
	r, err := wasm.NewRuntime(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	if err := kubewarden.DefineHosts(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

type anyResponse map[string]any

func call(m *wasm.Module, mode string) (anyResponse, error) {
	var out anyResponse
	var s json.RawMessage
	if mode != "" {
		s = settings(mode)
	}
	err := envelope.Call(context.Background(), m, envelope.ExportValidate, map[string]string{"hello": "world"}, s, &out)
	return out, err
}

func TestEnvelopeSettingsOmittedAndPresent(t *testing.T) {
	m := faults(t, wasm.ModuleConfig{})
	out, err := call(m, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := out["settings"]; ok {
		t.Errorf("settings sent although none are configured: %v", out)
	}
	if req, _ := out["request"].(map[string]any); req["hello"] != "world" {
		t.Errorf("request not passed through: %v", out)
	}
	var echoed anyResponse
	if err := envelope.Call(context.Background(), m, envelope.ExportValidate, 1, json.RawMessage(`{"x":1}`), &echoed); err != nil {
		t.Fatal(err)
	}
	if s, _ := echoed["settings"].(map[string]any); s["x"] != 1.0 {
		t.Errorf("settings not sent as configured: %v", echoed)
	}
}

// TestEnvelopeFaults checks the error classes of the envelope (a module's error, answers that
// break the envelope) and of the runtime beneath it, and that the module answers again
// afterwards.
func TestEnvelopeFaults(t *testing.T) {
	m := faults(t, wasm.ModuleConfig{PoolSize: 2, Timeout: 300 * time.Millisecond, MemoryLimit: 32 << 20, MaxOutputBytes: 1 << 20})
	cases := []struct {
		mode   string
		kind   wasm.ErrorKind
		detail string
	}{
		{"error", wasm.KindModuleError, "the module says no"},
		{"garbage", wasm.KindInvalidJSON, "not a JSON envelope"},
		{"two-documents", wasm.KindInvalidJSON, "more than one JSON document"},
		{"no-response", wasm.KindMissingResponse, "neither"},
		{"nothing", wasm.KindInvalidJSON, "wrote nothing"},
		{"huge", wasm.KindOutputTooLarge, "1048576 bytes"},
		{"exit3", wasm.KindExit, "exited with code 3"},
		{"trap", wasm.KindTrap, "about to trap"},
		{"loop", wasm.KindTimeout, "timeout 300ms"},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			_, err := call(m, c.mode)
			if !wasm.IsKind(err, c.kind) {
				t.Fatalf("got %v, want kind %s", err, c.kind)
			}
			msg := err.Error()
			t.Log(msg)
			if !strings.Contains(msg, `module "faults"`) || !strings.Contains(msg, `export "validate"`) || !strings.Contains(msg, c.detail) {
				t.Errorf("error %q should name the module, the export and %q", msg, c.detail)
			}
			// The instance that failed is replaced; the module keeps answering.
			for i := 0; i < 3; i++ {
				if _, err := call(m, ""); err != nil {
					t.Fatalf("call %d after %s: %v", i, c.mode, err)
				}
			}
		})
	}
}

// TestDebugLogsRedactTokens: with Debug, every call's input and output are logged, and tokens
// (in the request, and echoed by the module) never are.
func TestDebugLogsRedactTokens(t *testing.T) {
	var logs bytes.Buffer
	r := faultsRuntime(t, wasm.RuntimeConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	m := wasmtest.Load(t, r, wasmtest.Faults(t), wasm.ModuleConfig{Name: "chatty", PoolSize: 1, Debug: true})
	request := map[string]any{"kind": "TokenReview", "spec": map[string]any{"token": "very-secret-token"}}
	var echoed map[string]any
	if err := envelope.Call(context.Background(), m, envelope.ExportValidate, request, nil, &echoed); err != nil {
		t.Fatal(err)
	}
	got := logs.String()
	if strings.Contains(got, "very-secret-token") {
		t.Errorf("a token reached the log:\n%s", got)
	}
	for _, want := range []string{"module=chatty", "export=validate", `input="{\"request\":{\"kind\":\"TokenReview\",\"spec\":{\"token\":\"<redacted>\"}}}"`, "output="} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %s:\n%s", want, got)
		}
	}
	if envelope.RedactTokens([]byte("not json")) != "<8 bytes, not JSON>" {
		t.Errorf("non-JSON output: %q", envelope.RedactTokens([]byte("not json")))
	}
}
