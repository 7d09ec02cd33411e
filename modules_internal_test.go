package wasmkube

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm"
)

// TestModuleConfig: a profile entry's per-module options reach the runtime, relative granted
// directories resolved against the profile file.
func TestModuleConfig(t *testing.T) {
	p := &profiles.Loaded{Profile: &profiles.Profile{Name: "p"}, Source: "/etc/wasmkube/p.yaml"}
	m := profiles.Module{
		Name: "m", Module: "m.wasm", Settings: json.RawMessage(`{}`),
		Timeout: &metav1.Duration{Duration: time.Second}, MemoryLimit: "32Mi", Isolation: "fresh",
		PoolSize: ptr.To[int32](3), Debug: true,
		Grants: &profiles.Grants{Env: map[string]string{"A": "1"}, Args: []string{"x"},
			ReadOnlyDirs: []profiles.DirMount{{HostPath: "data", GuestPath: "/data"}}},
	}
	cfg := moduleConfig(p, m, wasm.ExportValidate)
	if cfg.Name != "m" || cfg.Exports[0] != "validate" || cfg.Timeout != time.Second || cfg.MemoryLimit != 32<<20 ||
		cfg.Isolation != wasm.Fresh || cfg.PoolSize != 3 || !cfg.Debug {
		t.Errorf("config %+v", cfg)
	}
	g := cfg.Grants
	if g.Env["A"] != "1" || g.Args[0] != "x" || g.ReadOnlyDirs[0].HostPath != filepath.Join("/etc/wasmkube", "data") || g.ReadOnlyDirs[0].GuestPath != "/data" {
		t.Errorf("grants %+v", g)
	}
}
