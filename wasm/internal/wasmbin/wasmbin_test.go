package wasmbin

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// mod assembles a module for tests: one memory, the given types, imports, functions and globals,
// and every function exported as f0, f1…
type mod struct {
	types    [][]byte // each: params vec + results vec, without the 0x60
	imports  [][]byte // each: a whole import entry
	funcs    []fn
	globals  [][]byte // each: a whole global entry
	tables   [][]byte // each: a whole table entry
	memory   []byte   // limits; nil: 0 pages, no max
	noMemory bool     // no memory section (a memory import instead)
	elements []byte   // whole section content
}

type fn struct {
	typ    byte
	locals []byte // the local declaration vector
	body   []byte // instructions including the final end
}

func sectionBytes(id byte, content ...byte) []byte {
	return append(append([]byte{id}, appendU32(nil, uint32(len(content)))...), content...)
}

func vec(items [][]byte, prefix ...byte) []byte {
	out := appendU32(nil, uint32(len(items)))
	for _, it := range items {
		out = append(out, prefix...)
		out = append(out, it...)
	}
	return out
}

func (m mod) bytes() []byte {
	out := append([]byte(nil), header...)
	types := m.types
	if types == nil {
		types = [][]byte{{0x00, 0x00}} // () -> ()
	}
	out = append(out, sectionBytes(secType, vec(types, 0x60)...)...)
	if m.imports != nil {
		out = append(out, sectionBytes(secImport, vec(m.imports)...)...)
	}
	var fs, code, exports [][]byte
	for i, f := range m.funcs {
		fs = append(fs, []byte{f.typ})
		locals := f.locals
		if locals == nil {
			locals = []byte{0x00}
		}
		body := append(append([]byte(nil), locals...), f.body...)
		code = append(code, append(appendU32(nil, uint32(len(body))), body...))
		name := "f" + string(rune('0'+i))
		exports = append(exports, append(append(appendU32(nil, uint32(len(name))), name...), 0x00, byte(i+m.funcImports())))
	}
	out = append(out, sectionBytes(secFunction, vec(fs)...)...)
	if m.tables != nil {
		out = append(out, sectionBytes(secTable, vec(m.tables)...)...)
	}
	memory := m.memory
	if memory == nil {
		memory = []byte{0x00, 0x00}
	}
	if !m.noMemory {
		out = append(out, sectionBytes(secMemory, append([]byte{0x01}, memory...)...)...)
	}
	if m.globals != nil {
		out = append(out, sectionBytes(secGlobal, vec(m.globals)...)...)
	}
	out = append(out, sectionBytes(secExport, vec(exports)...)...)
	if m.elements != nil {
		out = append(out, sectionBytes(secElement, m.elements...)...)
	}
	return append(out, sectionBytes(secCode, vec(code)...)...)
}

// funcImports counts the function imports, which come before the functions in the index space.
func (m mod) funcImports() int {
	n := 0
	for _, imp := range m.imports {
		if d, err := readImport(&reader{b: imp}); err == nil && d.kind == 0x00 {
			n++
		}
	}
	return n
}

// host is what the inserted imports call in tests.
type host struct {
	checks int
	stop   func(checks int) error // ends the call when it returns an error
	stack  int
}

var errStack = errors.New("stack exhausted")

func (h *host) instantiate(t *testing.T, bin []byte) api.Module {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { rt.Close(ctx) })
	_, err := rt.NewHostModuleBuilder("host").
		NewFunctionBuilder().WithFunc(func(context.Context, api.Module) {
		h.checks++
		if h.stop != nil {
			if err := h.stop(h.checks); err != nil {
				panic(err)
			}
		}
	}).Export("check").
		NewFunctionBuilder().WithFunc(func(context.Context, api.Module) { h.stack++; panic(errStack) }).Export("stack").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := rt.Instantiate(ctx, bin)
	if err != nil {
		t.Fatalf("rewritten module does not instantiate: %v", err)
	}
	return m
}

var metered = Options{HostModule: "host", CheckName: "check", Budget: 1000, StackName: "stack", StackLimit: 1 << 20}

func rewrite(t *testing.T, bin []byte, opts Options) *Result {
	t.Helper()
	res, err := Rewrite(bin, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// countdown counts local 0 from 5000 down to 0 in a loop.
var countdown = fn{typ: 0, locals: []byte{0x01, 0x01, 0x7f}, body: []byte{
	0x41, 0x88, 0x27, 0x21, 0x00, // local.set 0 (5000)
	0x03, 0x40, // loop
	0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, // local.tee 0 (local 0 - 1)
	0x0d, 0x00, // br_if 0
	0x0b, 0x0b}}

func TestLoopsAreCharged(t *testing.T) {
	res := rewrite(t, mod{funcs: []fn{countdown}, memory: []byte{0x00, 0x01}}.bytes(), Options{HostModule: "host", CheckName: "check", Budget: 1000, MaxMemoryPages: 4})
	if res.Loops != 1 || res.MinMemoryPages != 1 {
		t.Errorf("loops %d, min pages %d", res.Loops, res.MinMemoryPages)
	}
	h := &host{}
	m := h.instantiate(t, res.Binary)
	if max, ok := m.Memory().Definition().Max(); !ok || max != 4 {
		t.Errorf("memory max = %d, %v; want 4", max, ok)
	}
	if _, err := m.ExportedFunction("f0").Call(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Each of the 5000 iterations pays the loop's 6 instructions and, since the function goes
	// straight into the loop, the 3 outside it: 45 000 units, a check every 1000.
	if h.checks < 44 || h.checks > 45 {
		t.Errorf("check called %d times, want 44 or 45", h.checks)
	}
}

func TestAnEndlessLoopIsStopped(t *testing.T) {
	endless := fn{typ: 0, body: []byte{0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b}} // loop br 0 end
	res := rewrite(t, mod{funcs: []fn{endless}}.bytes(), metered)
	stop := errors.New("stop")
	h := &host{stop: func(n int) error {
		if n == 3 {
			return stop
		}
		return nil
	}}
	if _, err := h.instantiate(t, res.Binary).ExportedFunction("f0").Call(context.Background()); !errors.Is(err, stop) {
		t.Fatalf("endless loop: %v, want the check's error", err)
	}
}

// recurse(n) calls itself twice with n-1 until n is 0: no loop anywhere, 2^n calls.
var recurse = fn{typ: 1, body: []byte{
	0x20, 0x00, 0x45, 0x04, 0x40, 0x0f, 0x0b, // if n == 0 return
	0x20, 0x00, 0x41, 0x01, 0x6b, 0x10, 0x00, // recurse(n-1)
	0x20, 0x00, 0x41, 0x01, 0x6b, 0x10, 0x00, // recurse(n-1)
	0x0b}}

var i32ToNothing = []byte{0x01, 0x7f, 0x00}

func TestRecursionWithoutLoopsIsCharged(t *testing.T) {
	res := rewrite(t, mod{types: [][]byte{{0x00, 0x00}, i32ToNothing}, funcs: []fn{recurse}}.bytes(), metered)
	if res.EntryCharges != 1 {
		t.Errorf("entry charges %d, want 1", res.EntryCharges)
	}
	stop := errors.New("stop")
	h := &host{stop: func(n int) error {
		if n == 100 {
			return stop
		}
		return nil
	}}
	_, err := h.instantiate(t, res.Binary).ExportedFunction("f0").Call(context.Background(), 60)
	if !errors.Is(err, stop) {
		t.Fatalf("2^60 calls: %v, want the check's error", err)
	}
}

func TestDeepRecursionHitsTheStackLimit(t *testing.T) {
	// down(n) calls down(n-1) until n is 0: depth n.
	down := fn{typ: 1, body: []byte{
		0x20, 0x00, 0x45, 0x04, 0x40, 0x0f, 0x0b,
		0x20, 0x00, 0x41, 0x01, 0x6b, 0x10, 0x00, 0x0b}}
	opts := metered
	opts.StackLimit = 64 << 10
	res := rewrite(t, mod{types: [][]byte{{0x00, 0x00}, i32ToNothing}, funcs: []fn{down}}.bytes(), opts)
	h := &host{}
	f := h.instantiate(t, res.Binary).ExportedFunction("f0")
	if _, err := f.Call(context.Background(), 10); err != nil {
		t.Fatalf("depth 10 within 64 KiB: %v", err)
	}
	if _, err := f.Call(context.Background(), 10); err != nil {
		t.Fatalf("the estimate did not come back down after returning: %v", err)
	}
	if _, err := f.Call(context.Background(), 100000); !errors.Is(err, errStack) {
		t.Fatalf("depth 100000: %v, want the stack function's error", err)
	}
}

func TestRewriteRefusesIndicesItWouldAdd(t *testing.T) {
	cases := map[string]mod{
		// global.set 0 with no globals: invalid, but index 0 would name the fuel.
		"global": {funcs: []fn{{typ: 0, body: []byte{0x41, 0x00, 0x24, 0x00, 0x0b}}}},
		// a block typed with type 1 where only type 0 exists: 1 would name an appended type.
		"type": {types: [][]byte{{0x01, 0x7f, 0x01, 0x7f}}, funcs: []fn{{typ: 0, body: []byte{0x02, 0x01, 0x0b, 0x0b}}}},
		// local.get 1 in a function with one parameter: 1 would name the scratch local.
		"local": {types: [][]byte{i32ToNothing}, funcs: []fn{{typ: 0, body: []byte{0x20, 0x01, 0x1a, 0x0b}}}},
		// a global initialised from global 1 of 1.
		"initializer": {funcs: []fn{{typ: 0, body: []byte{0x0b}}}, globals: [][]byte{{0x7f, 0x00, 0x23, 0x01, 0x0b}}},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Rewrite(m.bytes(), metered)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			if _, err := wazero.NewRuntime(context.Background()).CompileModule(context.Background(), m.bytes()); err == nil {
				t.Fatal("the test module is valid; it should not be")
			}
		})
	}
}

func TestTablesAreCapped(t *testing.T) {
	// grow(n) grows table 0 by n null entries and returns the old size (-1 on failure).
	grow := fn{typ: 0, body: []byte{0xd0, 0x70, 0x20, 0x00, 0xfc, 0x0f, 0x00, 0x0b}}
	m := mod{types: [][]byte{{0x01, 0x7f, 0x01, 0x7f}}, funcs: []fn{grow}, tables: [][]byte{{0x70, 0x00, 0x10}}}
	opts := metered
	opts.MaxTableElements = 100
	res := rewrite(t, m.bytes(), opts)
	f := (&host{}).instantiate(t, res.Binary).ExportedFunction("f0")
	if out, err := f.Call(context.Background(), 84); err != nil || int32(out[0]) != 16 {
		t.Fatalf("grow to 100: %v %v", out, err)
	}
	if out, err := f.Call(context.Background(), 1); err != nil || int32(out[0]) != -1 {
		t.Fatalf("grow past 100: %v %v, want -1", out, err)
	}
	m.tables = [][]byte{{0x70, 0x00, 0xe5, 0x00}} // min 101
	if _, err := Rewrite(m.bytes(), opts); err == nil || !strings.Contains(err.Error(), "101 elements at start") {
		t.Fatalf("a table larger than the limit at start: %v", err)
	}
}

func TestBulkInstructionsAreCharged(t *testing.T) {
	// fill(n) fills n bytes of memory; one call with 1 MiB costs 65 536 units.
	fill := fn{typ: 0, body: []byte{0x41, 0x00, 0x41, 0x00, 0x20, 0x00, 0xfc, 0x0b, 0x00, 0x0b}}
	m := mod{types: [][]byte{i32ToNothing}, funcs: []fn{fill}, memory: []byte{0x00, 0x20}}
	res := rewrite(t, m.bytes(), metered)
	if res.BulkCharges != 1 {
		t.Fatalf("bulk charges %d", res.BulkCharges)
	}
	h := &host{}
	if _, err := h.instantiate(t, res.Binary).ExportedFunction("f0").Call(context.Background(), 1<<20); err != nil {
		t.Fatal(err)
	}
	if h.checks != 1 {
		t.Errorf("checks %d after filling 1 MiB with a budget of 1000, want 1", h.checks)
	}
}

func TestMemoryLimits(t *testing.T) {
	if _, err := Rewrite(mod{funcs: []fn{countdown}, memory: []byte{0x00, 0x08}}.bytes(), Options{MaxMemoryPages: 4}); err == nil || !strings.Contains(err.Error(), "needs 8 pages") {
		t.Fatalf("got %v", err)
	}
	// A maximum above 65536 pages is invalid; lowering it to the limit must not make it valid.
	if _, err := Rewrite(mod{funcs: []fn{countdown}, memory: []byte{0x01, 0x00, 0x81, 0x80, 0x04}}.bytes(), Options{MaxMemoryPages: 4}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
}

func TestUnsupportedFeatures(t *testing.T) {
	for name, body := range map[string][]byte{
		"gc":        {0xfb, 0x00, 0x0b},
		"tail call": {0x12, 0x00, 0x0b},
		"atomics":   {0xfe, 0x03, 0x00, 0x0b},
	} {
		if _, err := Rewrite(mod{funcs: []fn{{typ: 0, body: body}}}.bytes(), metered); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: got %v, want ErrUnsupported", name, err)
		}
	}
}

func TestNotWasm(t *testing.T) {
	if _, err := Rewrite([]byte("\x7fELF"), Options{}); err == nil {
		t.Fatal("accepted an ELF file")
	}
}

// TestExampleModules rewrites every example module: the result compiles, and Go's functions
// (the examples with a main.go) are charged at their first loop rather than at entry; other
// languages' short functions without loops are charged at entry, as they should be.
func TestExampleModules(t *testing.T) {
	paths, _ := filepath.Glob("../../../examples/*/*.wasm")
	if len(paths) == 0 {
		t.Fatal("no example modules")
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	for _, p := range paths {
		bin, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Rewrite(bin, metered)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if _, err := rt.CompileModule(ctx, res.Binary); err != nil {
			t.Fatalf("%s: the rewritten module does not compile: %v", p, err)
		}
		_, statErr := os.Stat(filepath.Join(filepath.Dir(p), "main.go"))
		if goModule := statErr == nil; goModule && res.EntryCharges*3 > res.Functions {
			t.Errorf("%s: %d of %d functions charged at entry", p, res.EntryCharges, res.Functions)
		}
		t.Logf("%s: %d functions, %d charged at entry, %d loops, %d bulk, max frame %d", filepath.Base(p), res.Functions, res.EntryCharges, res.Loops, res.BulkCharges, res.MaxFrame)
	}
}

// TestExportGlobals: the rewrite exports every mutable global the module defines, the fuel and
// the stack estimate included, under the prefix; wazero accepts the result and reads them.
func TestExportGlobals(t *testing.T) {
	bin, err := os.ReadFile("../../testdata/snapshot/counter.wasm")
	if err != nil {
		t.Fatal(err)
	}
	opts := metered
	opts.ExportGlobals = "g:"
	res, err := Rewrite(bin, opts)
	if err != nil {
		t.Fatal(err)
	}
	// counter.wat defines one global ($calls, 0); the fuel and the stack estimate follow it.
	if want := []string{"g:0", "g:1", "g:2"}; !slices.Equal(res.ExportedGlobals, want) || res.FuelGlobal != "g:1" || res.StateOutsideMemory {
		t.Fatalf("exported %v, fuel %q, state outside memory %v; want %v and g:1", res.ExportedGlobals, res.FuelGlobal, res.StateOutsideMemory, want)
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	noop := func(context.Context) {}
	if _, err := rt.NewHostModuleBuilder("host").NewFunctionBuilder().WithFunc(noop).Export("check").
		NewFunctionBuilder().WithFunc(noop).Export("stack").Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := rt.InstantiateModule(ctx, mustCompile(t, rt, res.Binary), wazero.NewModuleConfig().WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	if g := m.ExportedGlobal("g:1"); g == nil || g.Get() != uint64(metered.Budget) {
		t.Errorf("fuel global: %v", g)
	}
	// When the module already exports a name under the prefix, no global is exported.
	opts.ExportGlobals = "mem"
	if res, err := Rewrite(bin, opts); err != nil || !res.PrefixTaken || res.ExportedGlobals != nil {
		t.Errorf("export under the prefix: %v %+v", err, res)
	}
}

// TestStateOutsideMemory: table.set, data.drop, an imported mutable global and a mutable v128
// global are reported.
func TestStateOutsideMemory(t *testing.T) {
	tableSet := fn{typ: 0, body: []byte{0x41, 0x00, 0xd0, 0x70, 0x26, 0x00, 0x0b}}
	table := []byte{0x70, 0x00, 0x01}
	cases := map[string]mod{
		"table.set": {funcs: []fn{tableSet}, tables: [][]byte{table}},
		"data.drop": {funcs: []fn{{typ: 0, body: []byte{0xfc, 0x09, 0x00, 0x0b}}}},
		"import":    {imports: [][]byte{{0x01, 'm', 0x01, 'g', 0x03, 0x7f, 0x01}}, funcs: []fn{countdown}},
		// (global (mut v128) (v128.const i64x2 0 0))
		"v128 global": {funcs: []fn{countdown}, globals: [][]byte{append([]byte{0x7b, 0x01, 0xfd, 0x0c}, append(make([]byte, 16), 0x0b)...)}},
	}
	for name, m := range cases {
		res, err := Rewrite(m.bytes(), Options{})
		if err != nil || !res.StateOutsideMemory {
			t.Errorf("%s: %v, state outside memory %v", name, err, res != nil && res.StateOutsideMemory)
		}
	}
	if res, err := Rewrite(mod{funcs: []fn{countdown}}.bytes(), Options{}); err != nil || res.StateOutsideMemory {
		t.Errorf("countdown: %v", err)
	}
}

func mustCompile(t *testing.T, rt wazero.Runtime, bin []byte) wazero.CompiledModule {
	t.Helper()
	c, err := rt.CompileModule(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDefineMemory: a module importing env.memory (as OPA's do) defines it after the rewrite,
// capped like any memory; every instance has its own, and no host module provides one.
func TestDefineMemory(t *testing.T) {
	envMemory := append(append(append(appendU32(nil, 3), "env"...), appendU32(nil, 6)...), "memory"...)
	envMemory = append(envMemory, 0x02, 0x01, 0x01, 0x10) // memory, min 1, max 16 pages
	m := mod{
		types:    [][]byte{{0x00, 0x00}, {0x00, 0x01, 0x7f}},
		imports:  [][]byte{envMemory},
		noMemory: true,
		funcs: []fn{
			{typ: 0, body: []byte{0x41, 0x10, 0x41, 0x07, 0x3a, 0x00, 0x00, 0x0b}}, // store8 7 at 16
			{typ: 1, body: []byte{0x41, 0x10, 0x2d, 0x00, 0x00, 0x0b}},             // load8_u 16
			{typ: 1, body: []byte{0x41, 0x04, 0x40, 0x00, 0x0b}},                   // memory.grow 4
		},
	}
	res, err := Rewrite(m.bytes(), Options{DefineMemory: &ImportName{"env", "memory"}, MaxMemoryPages: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !res.DefinedMemory {
		t.Fatal("DefinedMemory is false")
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	compiled := mustCompile(t, rt, res.Binary)
	if n := len(compiled.ImportedMemories()); n != 0 {
		t.Fatalf("%d memory imports left", n)
	}
	a, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName("a"))
	if err != nil {
		t.Fatalf("instantiate without an env module: %v", err)
	}
	b, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName("b"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ExportedFunction("f0").Call(ctx); err != nil {
		t.Fatal(err)
	}
	got := func(m api.Module) uint64 {
		r, err := m.ExportedFunction("f1").Call(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r[0]
	}
	if got(a) != 7 || got(b) != 0 {
		t.Errorf("a reads %d (want 7), b reads %d (want 0: its own memory)", got(a), got(b))
	}
	if v, _ := a.Memory().ReadByte(16); v != 7 {
		t.Errorf("the host reads %d through the module's memory, want 7", v)
	}
	if r, _ := a.ExportedFunction("f2").Call(ctx); int32(r[0]) != -1 {
		t.Errorf("memory.grow past the cap of 2 pages returned %d, want -1", int32(r[0]))
	}
	// The import beside a memory section would be two memories.
	m.noMemory = false
	if _, err := Rewrite(m.bytes(), Options{DefineMemory: &ImportName{"env", "memory"}}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("a memory import beside a memory section: %v, want ErrUnsupported", err)
	}
	// Another import name is left as an import.
	m.noMemory = true
	res, err = Rewrite(m.bytes(), Options{DefineMemory: &ImportName{"env", "mem"}})
	if err != nil || res.DefinedMemory {
		t.Errorf("another name: %v, DefinedMemory %v", err, res != nil && res.DefinedMemory)
	}
	// Imports after the memory's are kept, all of them (a hostile module of
	// wasm/kubewarden/testdata found them cut short).
	envFunc := append(append(append(appendU32(nil, 3), "env"...), appendU32(nil, 1)...), "f"...)
	m.imports = [][]byte{envMemory, append(envFunc, 0x00, 0x00)}
	res, err = Rewrite(m.bytes(), Options{DefineMemory: &ImportName{"env", "memory"}})
	if err != nil {
		t.Fatal(err)
	}
	compiled = mustCompile(t, rt, res.Binary)
	if f, mem := len(compiled.ImportedFunctions()), len(compiled.ImportedMemories()); f != 1 || mem != 0 {
		t.Errorf("memory then a function imported: %d function imports, %d memory imports after the rewrite; want 1 and 0", f, mem)
	}
}
