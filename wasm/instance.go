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
	"github.com/tetratelabs/wazero/sys"
)

type instanceKey struct{}

var (
	errDeadline = errors.New("deadline exceeded")
	// initTimeout bounds a new instance's _initialize (the Go runtime's start-up takes ~1 ms).
	initTimeout = 10 * time.Second
)

// instance is one instantiated module with its own stdin, stdout and stderr.
type instance struct {
	m      *Module
	mod    api.Module
	fns    map[string]api.Function
	ctx    context.Context // carries the instance for checkDeadline
	stdin  input
	stdout output
	stderr headTail
	// deadline and callCtx bound the running call; read by checkDeadline on the same goroutine.
	deadline time.Time
	callCtx  context.Context
	// broken marks an instance that must not be reused.
	broken bool
	// wapc is the running waPC call or WASI-mode command, for the host functions.
	wapc *wapcCall
}

func (m *Module) newInstance(ctx context.Context) (*instance, error) {
	return m.newInstanceArgs(ctx, nil)
}

// newInstanceArgs creates an instance; args, when given, replace the granted arguments (a WASI
// command's argv for one call).
func (m *Module) newInstanceArgs(ctx context.Context, args []string) (*instance, error) {
	inst := &instance{m: m, fns: map[string]api.Function{}}
	inst.stdout.limit = m.cfg.MaxOutputBytes
	inst.stderr.max = stderrTail
	inst.ctx = context.WithValue(context.Background(), instanceKey{}, inst)
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(m.cfg.StartFunctions...).
		WithStdin(&inst.stdin).
		WithStdout(&inst.stdout).
		WithStderr(&inst.stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(inst.sleep).
		WithRandSource(rand.Reader)
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
	inst.deadline, inst.callCtx = time.Now().Add(initTimeout), ctx
	runCtx := inst.ctx
	if m.interrupt == InterruptContextDone {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(inst.ctx, inst.deadline)
		defer cancel()
	}
	mod, err := m.rt.InstantiateModule(runCtx, m.compiled, cfg)
	inst.callCtx = nil
	if err != nil {
		return nil, fmt.Errorf("module %q: instantiate: %w%s", m.cfg.Name, err, stderrSuffix(inst.stderr.String()))
	}
	inst.mod = mod
	return inst, nil
}

func stderrSuffix(s string) string {
	if s == "" {
		return ""
	}
	return "; stderr: " + s
}

// sleep is the module's nanosleep: it never sleeps past the call's deadline.
func (inst *instance) sleep(ns int64) {
	d := time.Duration(ns)
	if left := time.Until(inst.deadline); left < d {
		d = left
	}
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

// expired reports why the running call must stop, or nil.
func (inst *instance) expired() error {
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

func (inst *instance) fn(name string) api.Function {
	f, ok := inst.fns[name]
	if !ok {
		f = inst.mod.ExportedFunction(name)
		inst.fns[name] = f
	}
	return f
}

// call runs one export; see Module.Call.
func (inst *instance) call(ctx context.Context, export string, stdin []byte, deadline time.Time, decode func([]byte) error) error {
	if _, err := inst.run(ctx, export, stdin, deadline); err != nil {
		return err
	}
	if inst.stdout.overflow {
		inst.broken = true
		return inst.fail(export, KindOutputTooLarge, fmt.Errorf("wrote more than %d bytes", inst.stdout.limit))
	}
	if decode != nil {
		if err := decode(inst.stdout.b); err != nil {
			var ce *CallError
			if errors.As(err, &ce) {
				ce.Module, ce.Export = inst.m.cfg.Name, export
				if ce.Kind == KindInvalidJSON || ce.Kind == KindMissingResponse {
					inst.broken = true
				}
				return ce
			}
			inst.broken = true
			return inst.fail(export, KindInvalidJSON, err)
		}
	}
	return nil
}

// run calls export with params, stdin as its input, under deadline. A trap, a timeout or an exit
// marks the instance broken; an exit with code 0 (a WASI command's main returning) is success,
// though the instance cannot be used again.
func (inst *instance) run(ctx context.Context, export string, stdin []byte, deadline time.Time, params ...uint64) ([]uint64, error) {
	f := inst.fn(export)
	if f == nil {
		return nil, inst.fail(export, KindMissingExport, nil)
	}
	inst.stdin.reset(stdin)
	inst.stdout.reset()
	inst.stderr.reset()
	inst.deadline, inst.callCtx = deadline, ctx
	runCtx := inst.ctx
	if inst.m.interrupt == InterruptContextDone {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(context.WithValue(ctx, instanceKey{}, inst), deadline)
		defer cancel()
	}
	results, err := f.Call(runCtx, params...)
	inst.callCtx = nil
	if err != nil {
		inst.broken = true
		if exit := (*sys.ExitError)(nil); errors.As(err, &exit) && exit.ExitCode() == 0 {
			return nil, nil
		}
		return nil, inst.classify(err, func(kind ErrorKind, err error) error { return inst.fail(export, kind, err) })
	}
	return results, nil
}

func (inst *instance) fail(export string, kind ErrorKind, err error) error {
	return &CallError{Module: inst.m.cfg.Name, Export: export, Kind: kind, Err: err, Stderr: strings.TrimSpace(inst.stderr.String())}
}

// classify turns a wazero call error into a CallError.
func (inst *instance) classify(err error, fail func(ErrorKind, error) error) error {
	var exit *sys.ExitError
	switch {
	case errors.Is(err, errDeadline), errors.Is(err, context.DeadlineExceeded):
		return fail(KindTimeout, fmt.Errorf("stopped after the call's deadline (timeout %s)", inst.m.cfg.Timeout))
	case errors.Is(err, context.Canceled):
		return fail(KindTimeout, errors.New("caller canceled the call"))
	case errors.As(err, &exit):
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			return fail(KindTimeout, fmt.Errorf("stopped after the call's deadline (timeout %s)", inst.m.cfg.Timeout))
		case sys.ExitCodeContextCanceled:
			return fail(KindTimeout, errors.New("caller canceled the call"))
		}
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
