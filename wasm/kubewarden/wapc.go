package kubewarden

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmkube/wasmkube/wasm"
)

// The waPC protocol (https://wapc.io), as Kubewarden policies use it: the host calls the guest's
// __guest_call(op_len, payload_len); the guest fetches operation and payload with
// __guest_request and answers with __guest_response or __guest_error; during the call it may
// call the host with __host_call and fetch the answer with __host_response / __host_error.
//
// Written on wazero directly: wapc-go's wazero engine (served here only at v0.7.0) keeps one
// instance per pool slot without deadlines or replacement of broken instances, and would be a
// second instance pool beside Module's (pooling, timeouts, memory limits, typed errors).

// WAPCModule is the host module waPC guests import.
const WAPCModule = "wapc"

// HostCallFunc answers a guest's host call: binding (kubewarden for Kubewarden policies),
// namespace, operation and payload.
type HostCallFunc func(ctx context.Context, binding, namespace, operation string, payload []byte) ([]byte, error)

// wapcCall is the state of one waPC call on one instance.
type wapcCall struct {
	op, payload []byte
	response    []byte
	guestErr    []byte
	hostResp    []byte
	hostErr     []byte
	host        HostCallFunc
	console     func(string)
}

// CallWAPC runs the waPC operation op with payload on m, a waPC guest loaded after DefineHosts, and returns the guest's response. host
// answers the guest's host calls (nil: every host call fails); console receives __console_log
// lines (nil: they go to the module's log), cut and rate-limited per module either way.
//
// # Notes
//
//   - A __guest_error or a __guest_call that returns 0 is KindModuleError, with the guest's text.
//   - The module's limits apply: timeout, memory, one call per instance at a time; an answer
//     larger than MaxOutputBytes is KindOutputTooLarge; host calls that exchange more than
//     MaxHostCallBytes end the call with KindLimit.
func CallWAPC(ctx context.Context, m *wasm.Module, op string, payload []byte, host HostCallFunc, console func(string)) ([]byte, error) {
	if console == nil {
		logger := m.Logger()
		console = func(line string) { logger.Info(line, "source", "console") }
	}
	call := &wapcCall{op: []byte(op), payload: payload, host: host, console: console}
	inv := wasm.Invocation{Export: "__guest_call", Name: op, Params: []uint64{uint64(len(op)), uint64(len(payload))}, State: call}
	err := m.Invoke(ctx, inv, func(r wasm.Result) error {
		if len(r.Results) == 1 && uint32(r.Results[0]) == 1 && call.guestErr == nil {
			return nil
		}
		msg := string(call.guestErr)
		if msg == "" {
			msg = "the guest's __guest_call failed without an error message"
		}
		return &wasm.CallError{Kind: wasm.KindModuleError, Err: errors.New(msg)}
	})
	if err != nil {
		return nil, err
	}
	return call.response, nil
}

// CallCommand runs a WASI command (its _start) in a fresh instance of m with argv and stdin and
// returns its stdout; host answers host calls made through host.call, whose answers are
// appended to stdin (together with the calls, at most MaxHostCallBytes per call). Exit code 0 is
// success; any other is KindExit with stderr.
func CallCommand(ctx context.Context, m *wasm.Module, argv []string, stdin []byte, host HostCallFunc) ([]byte, error) {
	name := "_start"
	if len(argv) > 1 {
		name = argv[1]
	}
	var out []byte
	inv := wasm.Invocation{Export: "_start", Name: name, Stdin: stdin, Args: argv, State: &wapcCall{host: host}}
	err := m.Invoke(ctx, inv, func(r wasm.Result) error {
		out = bytes.Clone(r.Stdout)
		return nil
	})
	return out, err
}

// DefineHosts adds the host modules waPC guests and WASI-mode policies import (waPC's
// __host_call and the others, host.call) to r, once. Load does it; call it before loading such a
// guest with Runtime.Load directly.
func DefineHosts(ctx context.Context, r *wasm.Runtime) error {
	return r.DefineHost(ctx, "kubewarden", defineHosts)
}

// defineHosts adds the waPC host module and the WASI-mode host.call to a runtime.
func defineHosts(ctx context.Context, rt wazero.Runtime) error {
	i32 := api.ValueTypeI32
	fn := func(b wazero.HostModuleBuilder, name string, f api.GoModuleFunc, params, results []api.ValueType) wazero.HostModuleBuilder {
		return b.NewFunctionBuilder().WithGoModuleFunction(f, params, results).Export(name)
	}
	b := rt.NewHostModuleBuilder(WAPCModule)
	b = fn(b, "__guest_request", wapcGuestRequest, []api.ValueType{i32, i32}, nil)
	b = fn(b, "__guest_response", wapcGuestAnswer(false), []api.ValueType{i32, i32}, nil)
	b = fn(b, "__guest_error", wapcGuestAnswer(true), []api.ValueType{i32, i32}, nil)
	b = fn(b, "__host_call", hostCall(false), []api.ValueType{i32, i32, i32, i32, i32, i32, i32, i32}, []api.ValueType{i32})
	b = fn(b, "__host_response_len", hostAnswerLen(false), nil, []api.ValueType{i32})
	b = fn(b, "__host_response", hostAnswer(false), []api.ValueType{i32}, nil)
	b = fn(b, "__host_error_len", hostAnswerLen(true), nil, []api.ValueType{i32})
	b = fn(b, "__host_error", hostAnswer(true), []api.ValueType{i32}, nil)
	b = fn(b, "__console_log", consoleLog, []api.ValueType{i32, i32}, nil)
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiate host module %s: %w", WAPCModule, err)
	}
	// Kubewarden's WASI mode: host.call, also imported as kubewarden:javy/host.call by Javy.
	eight := []api.ValueType{i32, i32, i32, i32, i32, i32, i32, i32}
	for _, m := range []struct{ module, name string }{{"host", "call"}, {"kubewarden:javy", "host.call"}} {
		if _, err := fn(rt.NewHostModuleBuilder(m.module), m.name, hostCall(true), eight, []api.ValueType{i32}).Instantiate(ctx); err != nil {
			return fmt.Errorf("instantiate host module %s: %w", m.module, err)
		}
	}
	return nil
}

// callOf returns the running call and its waPC state; a host function called outside a waPC
// call or WASI-mode command (from a start function) ends the instantiation.
func callOf(ctx context.Context) (wasm.Call, *wapcCall) {
	c, ok := wasm.CallFrom(ctx)
	if !ok {
		panic(errors.New("waPC host function called outside a module call"))
	}
	call, _ := c.State().(*wapcCall)
	if call == nil {
		panic(errors.New("waPC host function called outside a waPC call"))
	}
	return c, call
}

func read(mod api.Module, ptr, n uint32) []byte {
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		panic(fmt.Errorf("guest memory out of range: %d bytes at %d", n, ptr))
	}
	return bytes.Clone(b)
}

func write(mod api.Module, ptr uint32, b []byte) {
	if !mod.Memory().Write(ptr, b) {
		panic(fmt.Errorf("guest memory out of range: %d bytes at %d", len(b), ptr))
	}
}

func wapcGuestRequest(ctx context.Context, mod api.Module, stack []uint64) {
	_, call := callOf(ctx)
	write(mod, uint32(stack[0]), call.op)
	write(mod, uint32(stack[1]), call.payload)
}

func wapcGuestAnswer(isError bool) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		c, call := callOf(ctx)
		c.CheckAnswer(uint32(stack[1]))
		b := read(mod, uint32(stack[0]), uint32(stack[1]))
		if isError {
			call.guestErr = b
		} else {
			call.response = b
		}
	}
}

// hostCall serves __host_call (waPC: 1 = ok, 0 = error; the answer is fetched with
// __host_response / __host_error) and host.call (WASI mode: 0 = ok, 1 = error; the answer is
// appended to stdin).
func hostCall(wasiMode bool) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		c, call := callOf(ctx)
		c.ChargeHostBytes(int(uint32(stack[1])) + int(uint32(stack[3])) + int(uint32(stack[5])) + int(uint32(stack[7])))
		binding := string(read(mod, uint32(stack[0]), uint32(stack[1])))
		namespace := string(read(mod, uint32(stack[2]), uint32(stack[3])))
		operation := string(read(mod, uint32(stack[4]), uint32(stack[5])))
		payload := read(mod, uint32(stack[6]), uint32(stack[7]))
		call.hostResp, call.hostErr = nil, nil
		var resp []byte
		err := errors.New("the host answers no host calls here")
		if call.host != nil {
			callCtx, cancel := c.Context(ctx)
			resp, err = call.host(callCtx, binding, namespace, operation, payload)
			cancel()
		}
		ok, failed := uint64(1), uint64(0)
		if wasiMode {
			ok, failed = 0, 1
		}
		if err != nil {
			call.hostErr = []byte(err.Error())
			c.ChargeHostBytes(len(call.hostErr))
			if wasiMode {
				c.AppendStdin(call.hostErr)
			}
			stack[0] = failed
			return
		}
		call.hostResp = resp
		c.ChargeHostBytes(len(resp))
		if wasiMode {
			c.AppendStdin(resp)
		}
		stack[0] = ok
	}
}

func hostAnswerLen(isError bool) api.GoModuleFunc {
	return func(ctx context.Context, _ api.Module, stack []uint64) {
		_, call := callOf(ctx)
		if isError {
			stack[0] = uint64(len(call.hostErr))
		} else {
			stack[0] = uint64(len(call.hostResp))
		}
	}
}

func hostAnswer(isError bool) api.GoModuleFunc {
	return func(ctx context.Context, mod api.Module, stack []uint64) {
		_, call := callOf(ctx)
		b := call.hostResp
		if isError {
			b = call.hostErr
		}
		write(mod, uint32(stack[0]), b)
	}
}

// consoleLog serves __console_log: the line (read only up to the log line limit) goes to the
// call's console, which the module's log limiter bounds.
func consoleLog(ctx context.Context, mod api.Module, stack []uint64) {
	c, call := callOf(ctx)
	if !c.AllowLogLine() {
		return
	}
	n := min(uint32(stack[1]), wasm.MaxLogLine+1)
	call.console(wasm.TruncateLogLine(string(read(mod, uint32(stack[0]), n))))
}
