package kubewarden_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
)

// TestHostileRegoModules: modules that pose as Rego policies and then break OPA's ABI fail their
// evaluation with a clear error, and the policy answers again (testdata/hostile).
func TestHostileRegoModules(t *testing.T) {
	cases := []struct {
		module string
		kind   wasm.ErrorKind
		want   string
	}{
		// opa_malloc calls a builtin while the host answers one: recursion on the host's stack.
		{"reentrant", wasm.KindTrap, "opa_builtin0 called while a builtin runs"},
		// opa_heap_ptr_get declared without its result.
		{"noresult", wasm.KindInvalidResponse, "opa_heap_ptr_get returned 0 values, want 1"},
	}
	for _, c := range cases {
		t.Run(c.module, func(t *testing.T) {
			bin, err := os.ReadFile(filepath.Join("testdata", "hostile", c.module+".wasm"))
			if err != nil {
				t.Fatal(err)
			}
			p, err := loadRego(t, bin, kubewarden.PolicyConfig{Module: wasm.ModuleConfig{Name: c.module}, Mode: kubewarden.ModeGatekeeper})
			if err != nil {
				t.Fatalf("it loads as a policy: %v", err)
			}
			for range 3 {
				_, err = p.Admit(context.Background(), review(namespace(`{}`)), false)
				wasmtest.WantCallError(t, err, c.module, "validate", c.kind)
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("%v, want %q", err, c.want)
				}
			}
		})
	}
}

// TestHostileRegoModulesAreCurrent: each committed .wasm is what wat2wasm makes of its .wat.
func TestHostileRegoModulesAreCurrent(t *testing.T) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Skip("wat2wasm (Debian package wabt) is not installed")
	}
	wats, _ := filepath.Glob("testdata/hostile/*.wat")
	if len(wats) == 0 {
		t.Fatal("no testdata/hostile/*.wat")
	}
	for _, wat := range wats {
		out := filepath.Join(t.TempDir(), "out.wasm")
		if b, err := exec.Command("wat2wasm", wat, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", wat, err, b)
		}
		want, _ := os.ReadFile(out)
		have, _ := os.ReadFile(strings.TrimSuffix(wat, ".wat") + ".wasm")
		if !bytes.Equal(want, have) {
			t.Errorf("%s.wasm is not what wat2wasm makes of %s: make hostile", strings.TrimSuffix(wat, ".wat"), wat)
		}
	}
}
