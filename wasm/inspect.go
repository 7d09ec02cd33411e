package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sort"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmkube/wasmkube/wasm/internal/wasmbin"
)

// Info describes a module without running it.
type Info struct {
	Size   int
	SHA256 string
	// ABIs lists what the module can be run as, e.g. "wasmkube (original ABI): validate".
	ABIs    []string
	Exports []Function
	Imports []Function
	// CustomSections are the custom sections' names and sizes.
	CustomSections []Section
	// MemoryMinPages is what the module asks for at instantiation (64 KiB pages).
	MemoryMinPages uint32
	// Metering is what the sandbox's rewrite inserts (package wasmbin), when it accepts the
	// module; otherwise Refused says why a load would fail.
	Metering *Metering
	Refused  string
}

// Metering describes a module's metered code.
type Metering struct {
	// Functions are the functions the module defines; EntryCharges of them pay at their entry,
	// the others at their first loop (or, small leaves, not at all).
	Functions, EntryCharges int
	// Loops and BulkCharges are the loop headers and bulk instructions that pay.
	Loops, BulkCharges int
	// MaxFrame is the largest frame estimate of a function, in bytes.
	MaxFrame uint32
}

// Function is an exported or imported function.
type Function struct {
	Module, Name    string
	Params, Results []string
}

// Section is a custom section.
type Section struct {
	Name string
	Size int
}

// Inspect compiles bin (nothing runs) and describes it.
func Inspect(ctx context.Context, bin []byte) (*Info, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCustomSections(true))
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, bin)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(bin)
	info := &Info{Size: len(bin), SHA256: hex.EncodeToString(sum[:])}
	for name, f := range cm.ExportedFunctions() {
		info.Exports = append(info.Exports, function("", name, f))
	}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		info.Imports = append(info.Imports, function(mod, name, f))
	}
	sort.Slice(info.Exports, func(i, j int) bool { return info.Exports[i].Name < info.Exports[j].Name })
	for _, s := range cm.CustomSections() {
		info.CustomSections = append(info.CustomSections, Section{Name: s.Name(), Size: len(s.Data())})
	}
	m := &Module{cfg: ModuleConfig{}.withDefaults()}
	opts := m.rewriteOptions()
	opts.MaxMemoryPages = 0 // what the module asks for, not what a limit would allow
	if res, err := wasmbin.Rewrite(bin, opts); err == nil {
		info.MemoryMinPages = res.MinMemoryPages
		info.Metering = &Metering{Functions: res.Functions, EntryCharges: res.EntryCharges,
			Loops: res.Loops, BulkCharges: res.BulkCharges, MaxFrame: res.MaxFrame}
	} else {
		info.Refused = err.Error()
	}
	info.ABIs = detectABIs(cm.ExportedFunctions())
	return info, nil
}

func function(mod, name string, f api.FunctionDefinition) Function {
	fn := Function{Module: mod, Name: name}
	for _, p := range f.ParamTypes() {
		fn.Params = append(fn.Params, api.ValueTypeName(p))
	}
	for _, r := range f.ResultTypes() {
		fn.Results = append(fn.Results, api.ValueTypeName(r))
	}
	return fn
}

func detectABIs(exports map[string]api.FunctionDefinition) []string {
	var abis, hooks []string
	// The exports of the envelope ABI (package envelope), named here as text: the core knows no ABI.
	for _, h := range []string{"authn", "authz", "validate", "mutate"} {
		if f, ok := exports[h]; ok && len(f.ParamTypes()) == 0 && len(f.ResultTypes()) == 0 {
			hooks = append(hooks, h)
		}
	}
	if len(hooks) > 0 {
		abi := "envelope (the original module ABI): "
		for i, h := range hooks {
			if i > 0 {
				abi += ", "
			}
			abi += h
		}
		abis = append(abis, abi)
	}
	if _, ok := exports["__guest_call"]; ok {
		abis = append(abis, "Kubewarden waPC policy (__guest_call)")
	}
	if _, ok := exports["_start"]; ok {
		abis = append(abis, "WASI command (_start): Kubewarden WASI policy or a program")
	}
	if _, ok := exports["_initialize"]; ok {
		abis = append(abis, "WASI reactor (_initialize runs once per instance)")
	}
	if _, ok := exports["opa_eval_ctx_new"]; ok {
		abis = append(abis, "OPA wasm ABI (Rego compiled to wasm): Kubewarden opa or gatekeeper policy")
	}
	if len(abis) == 0 {
		abis = append(abis, "none recognised")
	}
	return abis
}
