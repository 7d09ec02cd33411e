package wasm_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/wasmkube/wasmkube/internal/memstat"
	"github.com/wasmkube/wasmkube/wasm"
)

// demoModules are the modules of the demo profile (profiles/builtin/demo.yaml) and the export
// each serves.
var demoModules = []struct{ name, export string }{
	{"magic-authn", "authn"}, {"magic-authz", "authz"}, {"magic-mutate", "validate"},
	{"magic-validate", "validate"}, {"workload-policy", "validate"},
}

// BenchmarkDemoModulesMemory loads the demo profile's five modules into a runtime, as `up`
// does (default pool size, compilation cached on disk), and reports what they add to the
// process's RSS after garbage collection, per module: once loaded, and after every module served
// two concurrent calls (so that a pool made lazily holds two instances too):
//
//	go test ./wasm -run '^$' -bench BenchmarkDemoModulesMemory -benchtime 3x
func BenchmarkDemoModulesMemory(b *testing.B) {
	bins := make([][]byte, len(demoModules))
	for i, d := range demoModules {
		var err error
		if bins[i], err = os.ReadFile(filepath.Join("..", "examples", d.name, d.name+".wasm")); err != nil {
			b.Fatal(err)
		}
	}
	cache := b.TempDir()
	var loaded, called []float64
	for range b.N {
		before := memstat.Settled()
		rt, err := wasm.NewRuntime(context.Background(), wasm.RuntimeConfig{CacheDir: cache})
		if err != nil {
			b.Fatal(err)
		}
		var mods []*wasm.Module
		for i, d := range demoModules {
			m, err := rt.Load(context.Background(), bins[i], wasm.ModuleConfig{Name: d.name})
			if err != nil {
				b.Fatal(err)
			}
			mods = append(mods, m)
		}
		loaded = append(loaded, float64(memstat.Settled()-before)/float64(len(mods)))
		for i, m := range mods {
			var wg sync.WaitGroup
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Any answer will do (an empty stdin is an error answer): the call runs.
					_ = m.Call(context.Background(), demoModules[i].export, []byte(`{}`), nil)
				}()
			}
			wg.Wait()
		}
		called = append(called, float64(memstat.Settled()-before)/float64(len(mods)))
		for _, m := range mods {
			_ = m.Close(context.Background())
		}
		_ = rt.Close(context.Background())
	}
	b.ReportMetric(median(loaded)/(1<<20), "MiB/module-loaded")
	b.ReportMetric(median(called)/(1<<20), "MiB/module-called")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}
