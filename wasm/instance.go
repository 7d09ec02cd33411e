package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"
)

type instanceKey struct{}

var errDeadline = errors.New("deadline exceeded")

// instance is one instantiated module with its own stdin, stdout and stderr.
type instance struct {
	m      *Module
	mod    api.Module
	fns    map[string]api.Function
	ctx    context.Context // carries the instance for the host functions
	stdin  input
	stdout output
	stderr headTail
	// deadline and callCtx bound the running call (or the instantiation); read by the host
	// functions on the same goroutine.
	deadline time.Time
	callCtx  context.Context
	// hostBytes is what the running call exchanged through host calls so far.
	hostBytes int
	// broken marks an instance that must not be reused.
	broken bool
	// state is the running call's Invocation.State, for an ABI's host functions (Call.State).
	state any
	// local is what an ABI keeps with the instance between sessions (Session.Local).
	local any
	// resident, when not nil, runs the instance's _start in its own goroutine (resident.go).
	resident *resident
}

// newInstance creates an instance under deadline (and ctx); args, when not nil, replace the
// granted arguments (a WASI command's argv for one call). Failures are CallErrors of export
// "_initialize" (the start functions run here).
func (m *Module) newInstance(ctx context.Context, args []string, deadline time.Time) (*instance, error) {
	inst := &instance{m: m, fns: map[string]api.Function{}}
	inst.stdin.inst, inst.stdout.inst, inst.stderr.inst = inst, inst, inst
	inst.stdout.limit = m.cfg.MaxOutputBytes
	inst.stderr.max = stderrTail
	inst.ctx = experimental.WithMemoryAllocator(context.WithValue(context.Background(), instanceKey{}, inst), memoryAllocator)
	linkResident(ctx, inst)
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(m.cfg.StartFunctions...).
		WithStdin(&inst.stdin).
		WithStdout(&inst.stdout).
		WithStderr(&inst.stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(inst.sleep).
		WithRandSource(randSource{inst})
	if dirs := m.cfg.Grants.ReadOnlyDirs; len(dirs) > 0 {
		fs := wazero.NewFSConfig()
		for _, d := range dirs {
			fs = fs.WithReadOnlyDirMount(d.HostPath, d.GuestPath)
		}
		cfg = cfg.WithFSConfig(fs)
	}
	for k, v := range m.cfg.Grants.Env {
		cfg = cfg.WithEnv(k, v)
	}
	if args == nil {
		args = m.cfg.Grants.Args
	}
	if len(args) > 0 {
		cfg = cfg.WithArgs(args...)
	}
	inst.deadline, inst.callCtx = deadline, ctx
	mod, err := inst.instantiate(cfg)
	inst.callCtx = nil
	if err != nil {
		if mod != nil {
			_ = mod.Close(context.Background())
		}
		return nil, inst.classify(err, func(kind ErrorKind, err error) error {
			ce := inst.fail("_initialize", kind, err).(*CallError)
			ce.Err = fmt.Errorf("instantiate: %w", ce.Err)
			return ce
		})
	}
	inst.mod = mod
	return inst, nil
}

// sleep is the module's nanosleep: it never sleeps past the call's deadline.
func (inst *instance) sleep(ns int64) {
	d := min(time.Duration(ns), time.Until(inst.deadline))
	if d <= 0 {
		return
	}
	if inst.callCtx == nil {
		time.Sleep(d)
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-inst.callCtx.Done():
	}
}

// expired reports why the running call must stop, or nil (always nil for a nil instance).
func (inst *instance) expired() error {
	if inst == nil {
		return nil
	}
	if time.Now().After(inst.deadline) {
		return errDeadline
	}
	if c := inst.callCtx; c != nil {
		select {
		case <-c.Done():
			return c.Err()
		default:
		}
	}
	return nil
}

// randSource is the module's random source; it fails once the call's deadline has passed, so
// a guest asking for huge amounts of randomness in a loop is not kept busy past it.
type randSource struct{ inst *instance }

func (r randSource) Read(p []byte) (int, error) {
	const chunk = 256 << 10
	n := 0
	for n < len(p) {
		if err := r.inst.expired(); err != nil {
			return n, err
		}
		k, err := rand.Read(p[n:min(len(p), n+chunk)])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// instantiate instantiates the module, counted as running code (see activity).
func (inst *instance) instantiate(cfg wazero.ModuleConfig) (api.Module, error) {
	if err := inst.m.active.enter(); err != nil {
		return nil, err
	}
	defer inst.m.active.exit()
	return inst.m.rt.InstantiateModule(inst.ctx, inst.m.compiled, cfg)
}

// callFunction calls f, counted as running code (see activity).
func (inst *instance) callFunction(f api.Function, params []uint64) ([]uint64, error) {
	if err := inst.m.active.enter(); err != nil {
		return nil, err
	}
	defer inst.m.active.exit()
	return f.Call(inst.ctx, params...)
}

func (inst *instance) fn(name string) api.Function {
	f, ok := inst.fns[name]
	if !ok {
		f = inst.mod.ExportedFunction(name)
		inst.fns[name] = f
	}
	return f
}

// invoke runs inv under deadline and hands its result to handle while the instance is held.
// An error from handle that is a CallError is completed with the module and the call's name; one
// of KindInvalidJSON or KindMissingResponse, or any other error (then KindInvalidJSON), marks the
// instance broken: its output broke the ABI, its state is suspect.
func (inst *instance) invoke(ctx context.Context, inv Invocation, deadline time.Time, handle func(Result) error) error {
	name := inv.name()
	results, err := inst.run(ctx, inv, deadline)
	if err != nil {
		return err
	}
	if inst.stdout.overflow {
		inst.broken = true
		return inst.fail(name, KindOutputTooLarge, fmt.Errorf("wrote more than %d bytes", inst.stdout.limit))
	}
	if handle == nil {
		return nil
	}
	if err := handle(Result{Results: results, Stdout: inst.stdout.b}); err != nil {
		var ce *CallError
		if errors.As(err, &ce) {
			ce.Module, ce.Export = inst.m.cfg.Name, name
			if ce.Stderr == "" {
				ce.Stderr = strings.TrimSpace(inst.stderr.String())
			}
			if ce.Kind == KindInvalidJSON || ce.Kind == KindMissingResponse {
				inst.broken = true
			}
			return ce
		}
		inst.broken = true
		return inst.fail(name, KindInvalidJSON, err)
	}
	return nil
}

// run calls inv's export with its params and stdin under deadline. A trap, a timeout or an exit
// marks the instance broken; an exit with code 0 (a WASI command's main returning) is success,
// though the instance cannot be used again.
func (inst *instance) run(ctx context.Context, inv Invocation, deadline time.Time) ([]uint64, error) {
	name := inv.name()
	if inst.resident != nil {
		return inst.resident.call(ctx, inv, deadline)
	}
	f := inst.fn(inv.Export)
	if f == nil {
		return nil, inst.fail(name, KindMissingExport, nil)
	}
	inst.stdin.reset(inv.Stdin)
	inst.stdout.reset()
	inst.stderr.reset()
	inst.deadline, inst.callCtx, inst.hostBytes, inst.state = deadline, ctx, 0, inv.State
	results, err := inst.callFunction(f, inv.Params)
	inst.callCtx, inst.state = nil, nil
	if err != nil {
		inst.broken = true
		if exit := (*sys.ExitError)(nil); errors.As(err, &exit) && exit.ExitCode() == 0 {
			return nil, nil
		}
		return nil, inst.classify(err, func(kind ErrorKind, err error) error { return inst.fail(name, kind, err) })
	}
	return results, nil
}

func (inst *instance) fail(export string, kind ErrorKind, err error) error {
	return &CallError{Module: inst.m.cfg.Name, Export: export, Kind: kind, Err: err, Stderr: strings.TrimSpace(inst.stderr.String())}
}

// classify turns a wazero call error into a CallError.
func (inst *instance) classify(err error, fail func(ErrorKind, error) error) error {
	var exit *sys.ExitError
	var limit *limitError
	switch {
	case errors.Is(err, errDeadline), errors.Is(err, context.DeadlineExceeded):
		return fail(KindTimeout, fmt.Errorf("stopped after the call's deadline (timeout %s)", inst.m.cfg.Timeout))
	case errors.Is(err, context.Canceled):
		return fail(KindTimeout, errors.New("caller canceled the call"))
	case errors.Is(err, errRuntimeClosed):
		return fail(KindClosed, err)
	case errors.Is(err, errStackExhausted):
		return fail(KindStack, fmt.Errorf("the call stack passed its limit of %d MiB (deep or endless recursion)", inst.m.cfg.stackLimit()>>20))
	case errors.As(err, &limit):
		return fail(KindLimit, limit)
	case errors.Is(err, ErrOutOfMemory):
		return fail(KindMemory, fmt.Errorf("out of memory (limit %d MiB)", inst.m.cfg.MemoryLimit>>20))
	case errors.Is(err, errOutputLimit):
		return fail(KindOutputTooLarge, firstLine(err))
	case errors.As(err, &exit):
		if inst.outOfMemory() {
			return fail(KindMemory, fmt.Errorf("out of memory (limit %d MiB)", inst.m.cfg.MemoryLimit>>20))
		}
		ce := fail(KindExit, nil).(*CallError)
		ce.ExitCode = exit.ExitCode()
		return ce
	}
	if inst.outOfMemory() {
		return fail(KindMemory, fmt.Errorf("out of memory (limit %d MiB)", inst.m.cfg.MemoryLimit>>20))
	}
	return fail(KindTrap, firstLine(err))
}

// outOfMemory reports whether the module failed because its memory limit was reached: Go and
// Rust guests say so on stderr when memory.grow fails.
func (inst *instance) outOfMemory() bool {
	s := inst.stderr.String()
	return strings.Contains(s, "out of memory") || strings.Contains(s, "memory allocation of")
}

// firstLine keeps the first line of a wazero error; the wasm stack trace follows in the rest.
func firstLine(err error) error {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i > 0 {
		return errors.New(msg[:i])
	}
	return err
}

func (inst *instance) close() {
	if inst.mod != nil {
		_ = inst.mod.Close(context.Background())
	}
}

// limitError ends a call that went past one of the module's data limits (host calls).
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

// chargeHostBytes counts n bytes exchanged through a host call against MaxHostCallBytes and
// ends the call (by panicking, as the host functions do) when they pass it.
func (inst *instance) chargeHostBytes(n int) {
	if n < 0 || n > inst.m.cfg.MaxHostCallBytes-inst.hostBytes {
		panic(&limitError{fmt.Sprintf("host calls exchanged more than %d bytes in one call", inst.m.cfg.MaxHostCallBytes)})
	}
	inst.hostBytes += n
}
