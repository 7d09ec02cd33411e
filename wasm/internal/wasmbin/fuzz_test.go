package wasmbin

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
)

// FuzzRewrite checks the rewrite against wazero's validator on any input:
//
//   - it never panics;
//   - it never makes an invalid module valid: when wazero accepts the rewritten module, it
//     accepts the original too;
//   - it keeps valid modules valid: when the rewrite accepts a module wazero accepts, wazero
//     accepts the result.
//
// Only modules the rewrite accepts are handed to wazero: wazero sizes its slices by the counts
// a module states, and a fuzzed count can make it allocate gigabytes; the rewrite reads every
// element it counts before it accepts a module. (That valid modules are accepted is checked on
// real ones: TestExampleModules and the hostile modules.)
//
// Seeds: the hostile modules and the modules the unit tests assemble (testdata/fuzz holds more).
// Run: go test ./wasm/internal/wasmbin -run '^$' -fuzz FuzzRewrite -fuzztime 60s
func FuzzRewrite(f *testing.F) {
	paths, _ := filepath.Glob("../../testdata/hostile/*.wasm")
	snapshot, _ := filepath.Glob("../../testdata/snapshot/*.wasm")
	paths = append(paths, snapshot...)
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add(mod{funcs: []fn{countdown}}.bytes())
	f.Add(mod{types: [][]byte{{0x00, 0x00}, i32ToNothing}, funcs: []fn{recurse}}.bytes())
	f.Add(mod{funcs: []fn{{typ: 0, body: []byte{0x41, 0x00, 0x24, 0x00, 0x0b}}}}.bytes())
	ctx := context.Background()
	valid := func(b []byte) bool {
		rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
		defer rt.Close(ctx)
		_, err := rt.CompileModule(ctx, b)
		return err == nil
	}
	exported := metered
	exported.ExportGlobals = "wasmkube:global:"
	f.Fuzz(func(t *testing.T, bin []byte) {
		for _, opts := range []Options{metered, exported} {
			res, err := Rewrite(bin, opts)
			if err != nil {
				return
			}
			original, rewritten := valid(bin), valid(res.Binary)
			switch {
			case rewritten && !original:
				t.Fatalf("the rewrite made an invalid module valid (export globals %q)", opts.ExportGlobals)
			case original && !rewritten:
				t.Fatalf("the rewrite made a valid module invalid (export globals %q)", opts.ExportGlobals)
			}
		}
	})
}
