package wasm

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/tetratelabs/wazero"
)

// What an ABI needs to plug its host functions into the runtime: DefineHost adds its host
// modules once per runtime, and its host functions find the call they serve with CallFrom.

// hosts remembers which ABI host modules a runtime has.
type hosts struct {
	mu      sync.Mutex
	defined map[string]bool
}

// DefineHost adds the host modules of an ABI to the runtime, once: define runs the first time
// DefineHost is called with name (and again after it failed). Modules that import them must be
// loaded after.
func (r *Runtime) DefineHost(ctx context.Context, name string, define func(context.Context, wazero.Runtime) error) error {
	r.hosts.mu.Lock()
	defer r.hosts.mu.Unlock()
	if r.hosts.defined[name] {
		return nil
	}
	if err := define(ctx, r.rt); err != nil {
		return fmt.Errorf("define host %s: %w", name, err)
	}
	if r.hosts.defined == nil {
		r.hosts.defined = map[string]bool{}
	}
	r.hosts.defined[name] = true
	return nil
}

// Call is the running call of an instance, as the host functions it calls see it.
type Call struct{ inst *instance }

// CallFrom returns the call that a host function serves, from the context wazero hands it; ok
// is false outside a call (an instance's start functions run outside any Invocation: State is
// nil then).
func CallFrom(ctx context.Context) (c Call, ok bool) {
	inst, _ := ctx.Value(instanceKey{}).(*instance)
	return Call{inst}, inst != nil
}

// State is the Invocation's State.
func (c Call) State() any { return c.inst.state }

// Context is the caller's context bounded by the call's deadline, for work a host function does
// on the guest's behalf.
func (c Call) Context(fallback context.Context) (context.Context, context.CancelFunc) {
	ctx := c.inst.callCtx
	if ctx == nil {
		ctx = fallback
	}
	return context.WithDeadline(ctx, c.inst.deadline)
}

// ChargeHostBytes counts n bytes exchanged through a host call against MaxHostCallBytes and ends
// the call (with KindLimit) once they pass it. Host functions call it before they copy.
func (c Call) ChargeHostBytes(n int) { c.inst.chargeHostBytes(n) }

// AppendStdin adds b after what the guest's stdin holds (answers of WASI-mode host calls).
func (c Call) AppendStdin(b []byte) { c.inst.stdin.append(b) }

// CheckAnswer ends the call with KindOutputTooLarge when an answer of n bytes handed back
// through a host function would pass MaxOutputBytes.
func (c Call) CheckAnswer(n uint32) {
	if limit := c.inst.m.cfg.MaxOutputBytes; n > uint32(limit) {
		panic(fmt.Errorf("%w: the guest's answer of %d bytes is larger than %d bytes", errOutputLimit, n, limit))
	}
}

// AllowLogLine reports whether the module may log one more line now (see Module.LogLine).
func (c Call) AllowLogLine() bool { return c.inst.m.logs.allow() }

// Logger is the runtime's logger for the module.
func (m *Module) Logger() *slog.Logger { return m.logger.With("module", m.cfg.Name) }
