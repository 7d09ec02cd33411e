package hook

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/wasmkube/wasmkube/wasm"
)

// faultsWasm is the test module of wasm/testdata/faults, built for this test run.
var faultsWasm []byte

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "hook-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "faults.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "../testdata/faults")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the faults test module: %v\n%s", err, b)
		return 1
	}
	if faultsWasm, err = os.ReadFile(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// loadFaults loads the faults module with settings {"mode": mode}.
func loadFaults(t *testing.T, rt *wasm.Runtime, name, settings string, exports ...string) Module {
	t.Helper()
	m, err := rt.Load(context.Background(), faultsWasm, wasm.ModuleConfig{Name: name, Exports: exports, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return Module{Module: m, Settings: []byte(settings)}
}
