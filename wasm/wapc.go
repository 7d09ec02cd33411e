package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
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

// CallWAPC runs the waPC operation op with payload and returns the guest's response. host
// answers the guest's host calls (nil: every host call fails); log receives __console_log lines
// (nil: they go to the runtime's log), cut and rate-limited per module either way.
//
// # Notes
//
//   - A __guest_error or a __guest_call that returns 0 is KindModuleError, with the guest's text.
//   - The same limits as Call apply: timeout, memory, one call per instance at a time; an answer
//     larger than MaxOutputBytes is KindOutputTooLarge; host calls that exchange more than
//     MaxHostCallBytes end the call with KindLimit.
func (m *Module) CallWAPC(ctx context.Context, op string, payload []byte, host HostCallFunc, log func(string)) ([]byte, error) {
	var out []byte
	err := m.with(ctx, op, nil, func(inst *instance, deadline time.Time) error {
		call := &wapcCall{op: []byte(op), payload: payload, host: host, console: m.console(log)}
		inst.wapc = call
		defer func() { inst.wapc = nil }()
		res, err := inst.run(ctx, "__guest_call", nil, deadline, uint64(len(op)), uint64(len(payload)))
		if err != nil {
			if ce := (*CallError)(nil); errors.As(err, &ce) {
				ce.Export = op
			}
			return err
		}
		if len(res) != 1 || uint32(res[0]) != 1 || call.guestErr != nil {
			msg := string(call.guestErr)
			if msg == "" {
				msg = "the guest's __guest_call failed without an error message"
			}
			return inst.fail(op, KindModuleError, errors.New(msg))
		}
		out = call.response
		return nil
	})
	return out, err
}

// CallCommand runs a WASI command (its _start) in a fresh instance with argv and stdin and
// returns its stdout; host answers host calls made through host.call, whose answers are
// appended to stdin (together with the calls, at most MaxHostCallBytes per call). Exit code 0 is
// success; any other is KindExit with stderr.
func (m *Module) CallCommand(ctx context.Context, argv []string, stdin []byte, host HostCallFunc) ([]byte, error) {
	export := "_start"
	if len(argv) > 1 {
		export = argv[1]
	}
	var out []byte
	err := m.with(ctx, export, argv, func(inst *instance, deadline time.Time) error {
		inst.wapc = &wapcCall{host: host}
		defer func() { inst.wapc = nil }()
		if _, err := inst.run(ctx, "_start", stdin, deadline); err != nil {
			if ce := (*CallError)(nil); errors.As(err, &ce) {
				ce.Export = export
			}
			return err
		}
		if inst.stdout.overflow {
			return inst.fail(export, KindOutputTooLarge, fmt.Errorf("wrote more than %d bytes", inst.stdout.limit))
		}
		out = bytes.Clone(inst.stdout.b)
		return nil
	})
	return out, err
}

// console returns where a call's __console_log lines go: log, or the runtime's log.
func (m *Module) console(log func(string)) func(string) {
	if log != nil {
		return log
	}
	return func(line string) { m.logger.Info(line, "module", m.cfg.Name, "source", "console") }
}

// instantiateWAPC adds the waPC host module and the WASI-mode host.call to a runtime.
func instantiateWAPC(ctx context.Context, rt wazero.Runtime) error {
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

func callOf(ctx context.Context) (*instance, *wapcCall) {
	inst, _ := ctx.Value(instanceKey{}).(*instance)
	if inst == nil || inst.wapc == nil {
		panic(errors.New("waPC host function called outside a waPC call"))
	}
	return inst, inst.wapc
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
		inst, call := callOf(ctx)
		if n := uint32(stack[1]); n > uint32(inst.m.cfg.MaxOutputBytes) {
			panic(fmt.Errorf("%w: the guest's answer of %d bytes is larger than %d bytes", errOutputLimit, n, inst.m.cfg.MaxOutputBytes))
		}
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
		inst, call := callOf(ctx)
		inst.chargeHostBytes(int(uint32(stack[1])) + int(uint32(stack[3])) + int(uint32(stack[5])) + int(uint32(stack[7])))
		binding := string(read(mod, uint32(stack[0]), uint32(stack[1])))
		namespace := string(read(mod, uint32(stack[2]), uint32(stack[3])))
		operation := string(read(mod, uint32(stack[4]), uint32(stack[5])))
		payload := read(mod, uint32(stack[6]), uint32(stack[7]))
		call.hostResp, call.hostErr = nil, nil
		var resp []byte
		err := errors.New("the host answers no host calls here")
		if call.host != nil {
			callCtx := inst.callCtx
			if callCtx == nil {
				callCtx = ctx
			}
			callCtx, cancel := context.WithDeadline(callCtx, inst.deadline)
			resp, err = call.host(callCtx, binding, namespace, operation, payload)
			cancel()
		}
		ok, failed := uint64(1), uint64(0)
		if wasiMode {
			ok, failed = 0, 1
		}
		if err != nil {
			call.hostErr = []byte(err.Error())
			inst.chargeHostBytes(len(call.hostErr))
			if wasiMode {
				inst.stdin.append(call.hostErr)
			}
			stack[0] = failed
			return
		}
		call.hostResp = resp
		inst.chargeHostBytes(len(resp))
		if wasiMode {
			inst.stdin.append(resp)
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
	inst, call := callOf(ctx)
	if !inst.m.logs.allow() {
		return
	}
	n := min(uint32(stack[1]), maxLogLine+1)
	call.console(truncate(string(read(mod, uint32(stack[0]), n))))
}
