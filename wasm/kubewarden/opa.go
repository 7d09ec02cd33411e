package kubewarden

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
	"github.com/open-policy-agent/opa/v1/topdown/print"
	"github.com/open-policy-agent/opa/v1/version"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmkube/wasmkube/wasm"
)

// OPA's WebAssembly ABI (https://www.openpolicyagent.org/docs/wasm), versions 1.1 to 1.3, on
// wasmkube's runtime rather than OPA's own evaluator (docs/rationale.md says why): a Rego policy
// is a module like any other, with the same timeouts, memory limits, pool, metrics and failure
// policies. The module imports its memory (env.memory), which every instance defines for itself
// (wasm.ModuleConfig.DefineMemory), and calls the host for opa_abort, opa_println and the
// builtins the compiler did not put into the module (opa_builtin0..4), which OPA's Go
// implementations (package topdown) answer.

// OPAModule is the host module Rego policies import: env.
const OPAModule = "env"

// opaExports are the exports every ABI version has and the host needs.
var opaExports = []string{"opa_malloc", "opa_heap_ptr_get", "opa_heap_ptr_set", "opa_json_parse",
	"opa_json_dump", "opa_value_parse", "opa_value_dump", "entrypoints", "builtins"}

// refusedBuiltins are builtins topdown implements that a policy does not get, as they reach
// beyond the sandbox, unless its grants allow them (grantedBuiltins).
var refusedBuiltins = map[string]string{
	"http.send":               "it reaches the network, which wasmkube does not give policies",
	"opa.runtime":             "it describes the host process (its environment included)",
	"net.lookup_ip_addr":      "it resolves names in DNS; grant the host capability net/v1/dns_lookup_host to allow it",
	"json.match_schema":       "a schema's $ref is fetched from files and URLs",
	"json.verify_schema":      "a schema's $ref is fetched from files and URLs",
	"strings.render_template": "a Go template runs in the host without a bound on its time or memory",
	"graph.reachable_paths":   "the number of paths can grow exponentially with the graph",
	"rego.parse_module":       "it runs OPA's parser on any text, without a bound on its memory",
	"internal.test_case":      "it is for OPA's own test runner",
}

// grantedBuiltins are the refused builtins a host capability allows.
var grantedBuiltins = map[string]string{"net.lookup_ip_addr": "net/v1/dns_lookup_host"}

// regoProgram is what a Rego policy's module says about itself, read once at load.
type regoProgram struct {
	oneShot     bool // opa_eval (ABI 1.2) rather than the opa_eval_ctx_* sequence
	entrypoint  int32
	entrypoints map[string]int32
	builtins    map[int32]regoBuiltin
	// parse reads the builtins' arguments; its capabilities are computed once, at load (the
	// parser would otherwise sort OPA's whole builtin table for every argument).
	parse ast.ParserOptions
}

type regoBuiltin struct {
	name string
	fn   topdown.BuiltinFunc
}

// regoInstance is what one instance keeps between evaluations: where its heap starts, and
// the data parsed once when it does not change between evaluations.
type regoInstance struct {
	base     uint32 // heap pointer before any data
	dataAddr uint32 // the static data's value
	evalHeap uint32 // heap pointer after the static data
}

// regoCall is the state of one evaluation, for the host functions.
type regoCall struct {
	program *regoProgram
	bctx    topdown.BuiltinContext
	logger  *slog.Logger
	mod     *wasm.Module
	// current is the module call a builtin runs in, for print() to rate-limit its lines; while
	// it is set, the module may not call a builtin again (from opa_malloc or opa_value_parse).
	current *wasm.Call
}

// DefineOPAHost adds the env host module Rego policies import to r, once. Load does it.
func DefineOPAHost(ctx context.Context, r *wasm.Runtime) error {
	return r.DefineHost(ctx, "opa", defineOPAHost)
}

func defineOPAHost(ctx context.Context, rt wazero.Runtime) error {
	i32 := api.ValueTypeI32
	b := rt.NewHostModuleBuilder(OPAModule)
	b = b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(opaAbort), []api.ValueType{i32}, nil).Export("opa_abort")
	b = b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(opaPrintln), []api.ValueType{i32}, nil).Export("opa_println")
	for n := range 5 {
		params := slices.Repeat([]api.ValueType{i32}, n+2) // builtin id, reserved context, args
		b = b.NewFunctionBuilder().WithGoModuleFunction(opaBuiltin(n), params, []api.ValueType{i32}).Export("opa_builtin" + strconv.Itoa(n))
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate host module %s: %w", OPAModule, err)
	}
	return nil
}

// regoCallOf returns the running evaluation; a host function called outside one (from the
// module's start function) ends the instantiation.
func regoCallOf(ctx context.Context) (wasm.Call, *regoCall) {
	c, ok := wasm.CallFrom(ctx)
	if call, _ := c.State().(*regoCall); ok && call != nil {
		return c, call
	}
	panic(errors.New("OPA host function called outside an evaluation"))
}

// cString reads the NUL-terminated string at addr, at most limit bytes.
func cString(mem api.Memory, addr uint32, limit int) ([]byte, error) {
	size := mem.Size()
	if addr >= size {
		return nil, fmt.Errorf("string address %d is outside the module's memory", addr)
	}
	data, _ := mem.Read(addr, min(size-addr, uint32(limit)+1))
	n := bytes.IndexByte(data, 0)
	if n < 0 {
		return nil, fmt.Errorf("the string at %d is longer than %d bytes or not terminated", addr, limit)
	}
	return bytes.Clone(data[:n]), nil // a copy: the memory is the instance's, reused or closed after the session
}

func opaAbort(ctx context.Context, mod api.Module, stack []uint64) {
	msg, err := cString(mod.Memory(), uint32(stack[0]), wasm.MaxLogLine)
	if err != nil {
		panic(fmt.Errorf("opa_abort: %w", err))
	}
	if bytes.HasPrefix(msg, []byte("opa_malloc")) { // OPA's allocator could not grow the memory
		panic(fmt.Errorf("opa_abort: %s: %w", msg, wasm.ErrOutOfMemory))
	}
	panic(fmt.Errorf("opa_abort: %s", msg))
}

func opaPrintln(ctx context.Context, mod api.Module, stack []uint64) {
	c, call := regoCallOf(ctx)
	if !c.AllowLogLine() {
		return
	}
	if msg, err := cString(mod.Memory(), uint32(stack[0]), wasm.MaxLogLine); err == nil {
		call.mod.LogLine(call.logger, wasm.TruncateLogLine(string(msg)), "source", "opa_println")
	}
}

// opaBuiltin serves opa_builtinN: the arguments are dumped from the guest's heap and parsed as
// Rego terms, the builtin's Go implementation runs, and its result is parsed back into the heap.
// A builtin's error halts the evaluation when topdown says it must (a trap naming the builtin);
// other errors make its result undefined, as in OPA's own evaluator.
func opaBuiltin(n int) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		c, call := regoCallOf(ctx)
		if call.current != nil {
			panic(fmt.Errorf("opa_builtin%d called while a builtin runs: the module calls back into the host", n))
		}
		call.current = &c
		defer func() { call.current = nil }()
		b, ok := call.program.builtins[int32(stack[0])]
		if !ok {
			panic(fmt.Errorf("opa_builtin%d: builtin id %d is not one the module declared", n, int32(stack[0])))
		}
		args := make([]*ast.Term, n)
		for i := range n {
			args[i] = dumpTerm(ctx, mod, c, uint32(stack[2+i]), call.program.parse)
		}
		stack[0] = 0
		if out := call.run(b, args); out != nil {
			stack[0] = uint64(parseTerm(ctx, mod, c, out))
		}
	}
}

// run runs builtin b: its result, nil when undefined. A guard's refusal or a halting error
// traps.
func (call *regoCall) run(b regoBuiltin, args []*ast.Term) *ast.Term {
	if guard := builtinGuards[b.name]; guard != nil {
		if err := guard(args); err != nil {
			panic(fmt.Errorf("builtin %s refused: %w", b.name, err))
		}
	}
	var out *ast.Term
	err := b.fn(call.bctx, args, func(t *ast.Term) error { out = t; return nil })
	if _, halt := errors.AsType[topdown.Halt](err); halt {
		panic(fmt.Errorf("builtin %s: %w", b.name, err))
	}
	if err != nil {
		return nil
	}
	return out
}

// call1 calls export, which must return one value (a module may declare it otherwise).
func call1(s *wasm.Session, export string, params ...uint64) (uint32, error) {
	res, err := s.Call(export, params...)
	if err == nil && len(res) != 1 {
		err = s.Fail(wasm.KindInvalidResponse, fmt.Errorf("%s returned %d values, want 1: not OPA's wasm ABI", export, len(res)))
	}
	if err != nil {
		return 0, err
	}
	return uint32(res[0]), nil
}

// callGuest calls one of the module's exports from a host function.
func callGuest(ctx context.Context, mod api.Module, export string, params ...uint64) uint32 {
	res, err := mod.ExportedFunction(export).Call(ctx, params...)
	if err == nil && len(res) != 1 {
		err = fmt.Errorf("%s returned %d values, want 1: not OPA's wasm ABI", export, len(res))
	}
	if err != nil {
		panic(err)
	}
	return uint32(res[0])
}

// dumpTerm reads the Rego value at addr as a term.
func dumpTerm(ctx context.Context, mod api.Module, c wasm.Call, addr uint32, opts ast.ParserOptions) *ast.Term {
	s, err := cString(mod.Memory(), callGuest(ctx, mod, "opa_value_dump", uint64(addr)), wasm.DefaultMaxOutputBytes)
	if err != nil {
		panic(fmt.Errorf("opa_value_dump: %w", err))
	}
	c.ChargeHostBytes(len(s))
	return parseValue(s, opts)
}

// parseValue parses what opa_value_dump wrote, one Rego term.
func parseValue(s []byte, opts ast.ParserOptions) *ast.Term {
	body, err := ast.ParseBodyWithOpts(string(s), opts)
	if err == nil && len(body) == 1 {
		if t, ok := body[0].Terms.(*ast.Term); ok {
			return t
		}
	}
	panic(fmt.Errorf("opa_value_dump: want one term, got %.100q (%v)", s, err))
}

// parseTerm writes t into the guest's heap as a Rego value and returns its address.
func parseTerm(ctx context.Context, mod api.Module, c wasm.Call, t *ast.Term) uint32 {
	raw := []byte(t.String())
	c.ChargeHostBytes(len(raw))
	addr := callGuest(ctx, mod, "opa_malloc", uint64(len(raw)))
	if !mod.Memory().Write(addr, raw) {
		panic(fmt.Errorf("opa_malloc returned %d, outside the module's memory", addr))
	}
	v := callGuest(ctx, mod, "opa_value_parse", uint64(addr), uint64(len(raw)))
	if v == 0 {
		panic(errors.New("opa_value_parse could not parse a builtin's result"))
	}
	return v
}

// loadRego reads the module's ABI version, entrypoints and builtins, and picks the entrypoint:
// want by name when given, else the first (by id).
//
// # Notes
//
//   - A builtin the host cannot give (unknown to this OPA version, or one of refusedBuiltins) is
//     an error naming every such builtin.
func loadRego(ctx context.Context, mod *wasm.Module, want string, allow func(builtin string) bool) (*regoProgram, error) {
	prog := &regoProgram{parse: ast.ParserOptions{Capabilities: ast.CapabilitiesForThisVersion(), RegoVersion: ast.RegoV1}}
	var names map[string]int32
	err := mod.Session(ctx, "load", &regoCall{program: prog, mod: mod, logger: mod.Logger()}, func(s *wasm.Session) (err error) {
		names, err = prog.read(s)
		return err
	})
	if err == nil {
		prog.builtins, err = hostBuiltins(names, allow)
	}
	if err == nil {
		err = prog.pick(want)
	}
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", mod.Name(), err)
	}
	return prog, nil
}

// read reads the module's ABI version and entrypoints, and returns the builtins it declares.
func (p *regoProgram) read(s *wasm.Session) (builtins map[string]int32, err error) {
	major, ok1 := s.Global("opa_wasm_abi_version")
	minor, ok2 := s.Global("opa_wasm_abi_minor_version")
	if !ok1 || !ok2 || int32(major) != 1 || int32(minor) < 1 {
		return nil, fmt.Errorf("not an OPA policy of ABI 1.1 or later (opa_wasm_abi_version %d.%d)", int32(major), int32(minor))
	}
	p.oneShot = int32(minor) >= 2 && s.Exported("opa_eval")
	if p.entrypoints, err = readIDs(s, "entrypoints"); err != nil {
		return nil, err
	}
	return readIDs(s, "builtins")
}

// readIDs calls export (entrypoints or builtins), which answers a JSON object of names to ids.
func readIDs(s *wasm.Session, export string) (map[string]int32, error) {
	addr, err := call1(s, export)
	if err != nil {
		return nil, err
	}
	raw, err := dumpJSON(s, addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", export, err)
	}
	ids := map[string]int32{}
	if err := json.Unmarshal(raw, &ids); err != nil {
		return nil, fmt.Errorf("%s: want an object of names to ids, got %.200q", export, raw)
	}
	return ids, nil
}

// hostBuiltins maps the module's builtin ids to OPA's implementations, or names every builtin
// the host does not give.
func hostBuiltins(names map[string]int32, allow func(string) bool) (map[int32]regoBuiltin, error) {
	out := map[int32]regoBuiltin{}
	var missing []string
	for name, id := range names {
		fn := topdown.GetBuiltin(name)
		why, refused := refusedBuiltins[name]
		switch {
		case fn == nil:
			missing = append(missing, fmt.Sprintf("%s (not a builtin of OPA %s's Go implementation)", name, version.Version))
		case refused && (allow == nil || !allow(name)):
			missing = append(missing, fmt.Sprintf("%s (%s)", name, why))
		case !refused && !reviewedBuiltins[name]:
			missing = append(missing, fmt.Sprintf("%s (not reviewed for wasmkube's host: OPA compiles it into the modules it makes, or it is newer than this host)", name))
		default:
			out[id] = regoBuiltin{name: name, fn: fn}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("the policy needs builtins the host cannot give it: %s", strings.Join(missing, "; "))
	}
	return out, nil
}

// pickViolation chooses the entrypoint named violation (Gatekeeper's), when there is one.
func (p *regoProgram) pickViolation() {
	for name, id := range p.entrypoints {
		if name == "violation" || strings.HasSuffix(name, "/violation") {
			p.entrypoint = id
		}
	}
}

// pick chooses the entrypoint: want by name, else the one with the lowest id.
func (p *regoProgram) pick(want string) error {
	if want != "" {
		id, ok := p.entrypoints[want]
		if !ok {
			return fmt.Errorf("no entrypoint %q; it has %s", want, strings.Join(slices.Sorted(maps.Keys(p.entrypoints)), ", "))
		}
		p.entrypoint = id
		return nil
	}
	if len(p.entrypoints) == 0 {
		return errors.New("the module has no entrypoints")
	}
	p.entrypoint = slices.Min(slices.Collect(maps.Values(p.entrypoints)))
	return nil
}

// dumpJSON serializes the value at addr to JSON (opa_json_dump) and reads it.
func dumpJSON(s *wasm.Session, addr uint32) ([]byte, error) {
	str, err := call1(s, "opa_json_dump", uint64(addr))
	if err != nil {
		return nil, err
	}
	return cString(s.Memory(), str, s.MaxOutputBytes())
}

// parseJSON copies raw into the guest's heap and parses it (opa_json_parse) to a value.
func parseJSON(s *wasm.Session, raw []byte) (uint32, error) {
	addr, err := call1(s, "opa_malloc", uint64(len(raw)))
	if err != nil {
		return 0, err
	}
	if !s.Memory().Write(addr, raw) {
		return 0, s.Fail(wasm.KindMemory, fmt.Errorf("%d bytes of JSON do not fit in the module's memory", len(raw)))
	}
	v, err := call1(s, "opa_json_parse", uint64(addr), uint64(len(raw)))
	if err == nil && v == 0 {
		err = errors.New("opa_json_parse could not parse the JSON it was given")
	}
	return v, err
}

// newBuiltinContext is the context OPA's builtins see during one evaluation: the call's context
// (bounded by its deadline), the time the evaluation started, and print() going to the module's
// log.
func newBuiltinContext(ctx context.Context, hook print.Hook) (topdown.BuiltinContext, func()) {
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	return topdown.BuiltinContext{
		Context:   ctx,
		Metrics:   metrics.New(),
		Time:      ast.NumberTerm(json.Number(strconv.FormatInt(time.Now().UnixNano(), 10))),
		Cancel:    cancel,
		Cache:     builtins.Cache{},
		PrintHook: hook,
	}, func() { stop() }
}
