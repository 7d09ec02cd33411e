package kubewarden

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/open-policy-agent/opa/v1/topdown/print"

	"github.com/wasmkube/wasmkube/wasm"
)

// wasmPageSize is a WebAssembly memory page.
const wasmPageSize = 65536

// regoEval is one evaluation: the input document, and the data document when it changes between
// evaluations (context-aware data); nil data uses the static data the instance parsed once.
type regoEval struct {
	input []byte
	data  []byte
}

// evalRego evaluates the program's entrypoint once in one of mod's instances and returns the
// result set as JSON ([] when undefined, [{"result": …}] when defined).
//
// # Notes
//
//   - An instance parses the static data once, the first time it evaluates, and keeps the heap
//     pointer after it; every evaluation resets the heap to there, so nothing one evaluation
//     allocates outlives it.
//   - Data that changes (ev.data) is parsed each evaluation from the heap's start.
func (p *Policy) evalRego(ctx context.Context, ev regoEval) ([]byte, error) {
	var out []byte
	call := &regoCall{program: p.rego, mod: p.mod, logger: p.logger}
	if len(p.rego.builtins) > 0 { // a policy that calls none pays for no builtin context
		// Builtins run in Go, outside the module's metering: their context ends at its timeout.
		bounded, cancel := context.WithTimeout(ctx, p.mod.Config().Timeout)
		defer cancel()
		var stop func()
		call.bctx, stop = newBuiltinContext(bounded, printHook{call})
		defer stop()
	}
	err := p.mod.Session(ctx, "validate", call, func(s *wasm.Session) error {
		inst, err := p.regoInstance(s)
		if err != nil {
			return err
		}
		dataAddr, heap := inst.dataAddr, inst.evalHeap
		if ev.data != nil {
			if dataAddr, heap, err = parseDataAt(s, inst.base, ev.data); err != nil {
				return err
			}
		}
		if p.rego.oneShot {
			out, err = evalOneShot(s, p.rego.entrypoint, dataAddr, heap, ev.input)
		} else {
			out, err = evalContext(s, p.rego.entrypoint, dataAddr, heap, ev.input)
		}
		return err
	})
	return out, err
}

// regoInstance returns what the session's instance keeps, making it on its first evaluation:
// the heap's start, and the static data parsed after it.
func (p *Policy) regoInstance(s *wasm.Session) (*regoInstance, error) {
	if inst, ok := s.Local().(*regoInstance); ok {
		return inst, nil
	}
	// opa_malloc(0) runs the heap's own initialization before its pointer is read, as OPA's SDK does.
	if _, err := s.Call("opa_malloc", 0); err != nil {
		return nil, err
	}
	base, err := call1(s, "opa_heap_ptr_get")
	if err != nil {
		return nil, err
	}
	inst := &regoInstance{base: base}
	if inst.dataAddr, inst.evalHeap, err = parseDataAt(s, inst.base, p.regoData); err != nil {
		return nil, err
	}
	s.SetLocal(inst)
	return inst, nil
}

// parseDataAt resets the heap to base and parses data there; it returns the data's address and
// the heap pointer after it.
func parseDataAt(s *wasm.Session, base uint32, data []byte) (addr, heap uint32, err error) {
	if _, err := s.Call("opa_heap_ptr_set", uint64(base)); err != nil {
		return 0, 0, err
	}
	if addr, err = parseJSON(s, data); err != nil {
		return 0, 0, fmt.Errorf("data: %w", err)
	}
	heap, err = call1(s, "opa_heap_ptr_get")
	return addr, heap, err
}

// evalOneShot evaluates with ABI 1.2's opa_eval: the input is written at the heap pointer and
// the heap continues after it.
func evalOneShot(s *wasm.Session, entrypoint int32, dataAddr, heap uint32, input []byte) ([]byte, error) {
	if err := fitMemory(s, heap, len(input)); err != nil {
		return nil, err
	}
	s.Memory().Write(heap, input)
	end := heap + uint32(len(input))
	result, err := call1(s, "opa_eval", 0, uint64(entrypoint), uint64(dataAddr), uint64(heap), uint64(len(input)), uint64(end), 0)
	if err != nil {
		return nil, err
	}
	return cString(s.Memory(), result, s.MaxOutputBytes())
}

// fitMemory grows the instance's memory so that n bytes fit at addr, within its limit.
func fitMemory(s *wasm.Session, addr uint32, n int) error {
	short := int64(addr) + int64(n) - int64(s.Memory().Size())
	if _, ok := s.Memory().Grow(uint32(max(0, (short+wasmPageSize-1)/wasmPageSize))); !ok {
		return s.Fail(wasm.KindMemory, fmt.Errorf("an input of %d bytes does not fit in the module's memory limit", n))
	}
	return nil
}

// evalContext evaluates with ABI 1.1's opa_eval_ctx_* sequence.
func evalContext(s *wasm.Session, entrypoint int32, dataAddr, heap uint32, input []byte) ([]byte, error) {
	if _, err := s.Call("opa_heap_ptr_set", uint64(heap)); err != nil {
		return nil, err
	}
	ctx32, err := call1(s, "opa_eval_ctx_new")
	if err != nil {
		return nil, err
	}
	ctxAddr := uint64(ctx32)
	inputAddr, err := parseJSON(s, input)
	if err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	steps := []struct {
		export string
		params []uint64
	}{
		{"opa_eval_ctx_set_input", []uint64{ctxAddr, uint64(inputAddr)}},
		{"opa_eval_ctx_set_data", []uint64{ctxAddr, uint64(dataAddr)}},
		{"opa_eval_ctx_set_entrypoint", []uint64{ctxAddr, uint64(entrypoint)}},
		{"eval", []uint64{ctxAddr}},
	}
	for _, step := range steps {
		if _, err := s.Call(step.export, step.params...); err != nil {
			return nil, err
		}
	}
	result, err := call1(s, "opa_eval_ctx_get_result", ctxAddr)
	if err != nil {
		return nil, err
	}
	return dumpJSON(s, result)
}

// printHook sends Rego's print() to the policy's log.
type printHook struct{ call *regoCall }

func (h printHook) Print(pctx print.Context, msg string) error {
	if c := h.call.current; c != nil && !c.AllowLogLine() {
		return nil
	}
	h.call.mod.LogLine(h.call.logger, wasm.TruncateLogLine(msg), "source", "print")
	return nil
}

// regoResult is the value of a defined result set ([{"result": v}]); defined is false for [].
func regoResult(out []byte) (v json.RawMessage, defined bool, err error) {
	var set []struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(out, &set); err != nil {
		return nil, false, fmt.Errorf("want a result set [{\"result\": …}], got %.200q", out)
	}
	if len(set) == 0 {
		return nil, false, nil
	}
	return set[0].Result, true, nil
}
