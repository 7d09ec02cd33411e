package wasm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	. "github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
)

// TestMeteringKeepsBehaviour runs example modules (of the original ABI, and waPC policies) with
// their requests and settings twice: metered (the default) and as written (InterruptNone
// rewrites nothing but the limits). The answers must be byte for byte the same. (Three examples:
// each compiles a second time unmetered, about a second.)
func TestMeteringKeepsBehaviour(t *testing.T) {
	r, err := NewRuntime(context.Background(), RuntimeConfig{CacheDir: filepath.Join(os.TempDir(), "wasmkube-test-cache")})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	tested := 0
	for _, example := range []string{"magic-mutate", "workload-policy", "default-labels"} {
		dir := filepath.Join("..", "examples", example)
		name := filepath.Base(dir)
		bin, err := os.ReadFile(filepath.Join(dir, name+".wasm"))
		if err != nil {
			continue
		}
		request := readYAML(t, filepath.Join(dir, "request.yaml"))
		settings := readYAML(t, filepath.Join(dir, "settings.yaml"))
		md, _, _ := kubewarden.ReadMetadata(bin)
		answers := map[Interrupt][]byte{}
		for _, interrupt := range []Interrupt{InterruptMetered, InterruptNone} {
			cfg := ModuleConfig{Name: name, Interrupt: interrupt, PoolSize: 1}
			var out []byte
			switch {
			case md != nil && md.ExecutionMode == kubewarden.ModeWASI:
				continue // host calls need a cluster: examples_test covers it
			case md != nil:
				p, err := kubewarden.Load(context.Background(), r, bin, kubewarden.PolicyConfig{Module: cfg, Settings: settings})
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				payload, _ := json.Marshal(map[string]json.RawMessage{"request": field(t, request, "request"), "settings": settings})
				if out, err = kubewarden.CallWAPC(context.Background(), p.Module(), "validate", payload, nil, nil); err != nil {
					t.Fatalf("%s (%s): %v", name, interrupt, err)
				}
				p.Close(context.Background())
			default:
				export := map[string]string{"TokenReview": envelope.ExportAuthn, "SubjectAccessReview": envelope.ExportAuthz}[kind(t, request)]
				if export == "" {
					export = envelope.ExportValidate
				}
				cfg.Exports = []string{export}
				m, err := r.Load(context.Background(), bin, cfg)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				// The envelope ABI's input (package envelope): settings omitted when there are none.
				envelopeIn := map[string]json.RawMessage{"request": request}
				if len(settings) > 0 {
					envelopeIn["settings"] = settings
				}
				in, _ := json.Marshal(envelopeIn)
				err = m.Call(context.Background(), export, in, func(stdout []byte) error { out = bytes.Clone(stdout); return nil })
				m.Close(context.Background())
				if err != nil {
					t.Fatalf("%s (%s): %v", name, interrupt, err)
				}
			}
			answers[interrupt] = out
		}
		if len(answers) == 0 {
			continue
		}
		tested++
		if !bytes.Equal(answers[InterruptMetered], answers[InterruptNone]) {
			t.Errorf("%s answers differently when metered:\n%s\nvs\n%s", name, answers[InterruptMetered], answers[InterruptNone])
		}
	}
	if tested != 3 {
		t.Errorf("compared %d examples, want 3", tested)
	}
}

func readYAML(t *testing.T, path string) json.RawMessage {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return j
}

func field(t *testing.T, doc json.RawMessage, name string) json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	return m[name]
}

func kind(t *testing.T, doc json.RawMessage) string {
	var k struct{ Kind string }
	if err := json.Unmarshal(doc, &k); err != nil {
		t.Fatal(err)
	}
	return k.Kind
}
