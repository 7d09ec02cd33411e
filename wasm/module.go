package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/wasmkube/wasmkube/wasm/internal/wasmbin"
)

// Isolation says how calls share instances.
type Isolation string

const (
	// Pooled keeps pre-initialized instances and reuses them; one call per instance at a time.
	Pooled Isolation = "pooled"
	// Fresh creates an instance per call, as the original proof of concept did.
	Fresh Isolation = "fresh"
)

// Interrupt says how a call that overruns its timeout is stopped.
type Interrupt string

const (
	// InterruptLoopCheck inserts a deadline check at loop headers (the default); a module that
	// cannot be rewritten falls back to InterruptContextDone.
	InterruptLoopCheck Interrupt = "loop-check"
	// InterruptContextDone uses wazero's close-on-context-done: safe, ~5× slower on loop-heavy code.
	InterruptContextDone Interrupt = "context-done"
	// InterruptNone stops nothing: for trusted modules only. A module that loops forever then
	// blocks its caller forever and stalls the Go garbage collector of the whole process.
	InterruptNone Interrupt = "none"
)

// Defaults of ModuleConfig.
const (
	DefaultTimeout        = 2 * time.Second
	DefaultMemoryLimit    = 64 << 20
	DefaultMaxOutputBytes = 4 << 20
	pageSize              = 64 << 10
	stderrTail            = 1 << 10
)

// Grants are what a module may reach beyond stdin, stdout, stderr, clocks and randomness.
// Nothing is granted by default: no environment, no arguments, no files. (WASI preview 1 has no
// sockets: modules never reach the network.)
type Grants struct {
	Env  map[string]string
	Args []string
	// ReadOnlyDirs mount host directories read-only into the module's file system.
	ReadOnlyDirs []DirMount
}

// DirMount mounts the host directory HostPath at GuestPath (e.g. /data).
type DirMount struct {
	HostPath, GuestPath string
}

// ModuleConfig configures one loaded module.
type ModuleConfig struct {
	// Name identifies the module in errors, logs and metrics.
	Name string
	// Exports that must exist; Load fails naming the first one missing.
	Exports []string
	// Isolation is Pooled (default) or Fresh.
	Isolation Isolation
	// PoolSize bounds concurrent calls of a pooled module; default runtime.NumCPU().
	PoolSize int
	// Timeout bounds one call; DefaultTimeout when zero.
	Timeout time.Duration
	// MemoryLimit bounds an instance's linear memory in bytes (rounded up to 64 KiB pages);
	// DefaultMemoryLimit when zero.
	MemoryLimit int64
	// MaxOutputBytes bounds what a call may write to stdout; DefaultMaxOutputBytes when zero.
	MaxOutputBytes int
	// Interrupt picks how overrunning calls are stopped; InterruptLoopCheck when empty.
	Interrupt Interrupt
	Grants    Grants
	// StartFunctions run once when an instance is created, those the module exports, in order;
	// default _initialize (Go and Rust reactors).
	StartFunctions []string
	// SpareArgs are the arguments of the spare instance a Fresh module keeps ready for its
	// next call (nil: Grants.Args); calls with other arguments create their own instance.
	SpareArgs []string
	// Debug logs every envelope call's input and output (see CallEnvelope) at info level, with
	// every "token" field redacted.
	Debug bool
}

func (c ModuleConfig) withDefaults() ModuleConfig {
	if c.Isolation == "" {
		c.Isolation = Pooled
	}
	if c.PoolSize <= 0 {
		c.PoolSize = runtime.NumCPU()
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MemoryLimit <= 0 {
		c.MemoryLimit = DefaultMemoryLimit
	}
	if c.MaxOutputBytes <= 0 {
		c.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if c.Interrupt == "" {
		c.Interrupt = InterruptLoopCheck
	}
	if c.StartFunctions == nil {
		c.StartFunctions = []string{"_initialize"}
	}
	return c
}

// Module is a compiled module with its instances.
type Module struct {
	cfg      ModuleConfig
	observer Observer
	logger   *slog.Logger
	hash     string
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	// interrupt is how calls are actually stopped (after a possible fallback).
	interrupt Interrupt
	pool      chan *instance // nil entries are slots whose instance must be created
	// spare holds one instance of a Fresh module made ahead of its next call, so the call does
	// not wait for instantiation (and the start functions); refilling says one is being made.
	spare     chan *instance
	refilling atomic.Bool
	closed    atomic.Bool
	wg        sync.WaitGroup
}

// Load compiles bin and, for a pooled module, creates and initializes all its instances.
//
// # Notes
//
//   - The module's memory is capped at MemoryLimit; a module that needs more at start fails to load.
//   - Compilation is cached by content (see RuntimeConfig.CacheDir).
func (r *Runtime) Load(ctx context.Context, bin []byte, cfg ModuleConfig) (_ *Module, err error) {
	cfg = cfg.withDefaults()
	for _, d := range cfg.Grants.ReadOnlyDirs {
		if st, err := os.Stat(d.HostPath); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("module %q: grants: %s is not a directory to mount at %s", cfg.Name, d.HostPath, d.GuestPath)
		}
	}
	sum := sha256.Sum256(bin)
	m := &Module{cfg: cfg, hash: hex.EncodeToString(sum[:]), interrupt: cfg.Interrupt, observer: r.observer, logger: r.logger}
	pages := uint32((cfg.MemoryLimit + pageSize - 1) / pageSize)

	rewritten, err := m.rewrite(bin, pages)
	if err != nil {
		return nil, fmt.Errorf("module %q: %w", cfg.Name, err)
	}
	if m.interrupt == InterruptContextDone {
		if m.rt, err = r.safeRuntime(ctx); err != nil {
			return nil, err
		}
	} else {
		m.rt = r.fast
	}
	if m.compiled, err = m.rt.CompileModule(ctx, rewritten); err != nil {
		return nil, fmt.Errorf("module %q: compile: %w", cfg.Name, err)
	}
	defer func() {
		if err != nil {
			m.Close(context.Background())
		}
	}()
	exported := m.compiled.ExportedFunctions()
	for _, e := range cfg.Exports {
		if _, ok := exported[e]; !ok {
			return nil, fmt.Errorf("missing function '%s' in module '%s'", e, cfg.Name)
		}
	}
	if cfg.Isolation == Fresh {
		// The spare is made now: a module that cannot be instantiated fails to load.
		inst, err := m.newInstanceArgs(ctx, cfg.SpareArgs)
		if err != nil {
			return nil, err
		}
		m.spare = make(chan *instance, 1)
		m.spare <- inst
	}
	if cfg.Isolation == Pooled {
		m.pool = make(chan *instance, cfg.PoolSize)
		for i := 0; i < cfg.PoolSize; i++ {
			inst, err := m.newInstance(ctx)
			if err != nil {
				return nil, err
			}
			m.pool <- inst
		}
		m.observer.ObservePool(cfg.Name, cfg.PoolSize, len(m.pool))
	}
	if m.interrupt != cfg.Interrupt {
		r.logger.Info("module code could not be instrumented; using close-on-context-done", "module", cfg.Name)
	}
	return m, nil
}

// rewrite caps memory and, for InterruptLoopCheck, inserts the loop checks; a module whose code
// cannot be walked falls back to InterruptContextDone.
func (m *Module) rewrite(bin []byte, pages uint32) ([]byte, error) {
	opts := wasmbin.Options{MaxMemoryPages: pages}
	if m.interrupt == InterruptLoopCheck {
		opts.CheckModule, opts.CheckName, opts.Interval = HostModule, checkFunction, checkInterval
	}
	res, err := wasmbin.Rewrite(bin, opts)
	if errors.Is(err, wasmbin.ErrUnsupported) && opts.CheckName != "" {
		m.interrupt = InterruptContextDone
		opts.CheckName = ""
		res, err = wasmbin.Rewrite(bin, opts)
	}
	if err != nil {
		return nil, err
	}
	return res.Binary, nil
}

// Name is the module's configured name.
func (m *Module) Name() string { return m.cfg.Name }

// Hash is the SHA-256 of the module's original bytes, hex-encoded.
func (m *Module) Hash() string { return m.hash }

// Interrupt is how overrunning calls of this module are stopped.
func (m *Module) Interrupt() Interrupt { return m.interrupt }

// Config is the module's configuration with defaults applied.
func (m *Module) Config() ModuleConfig { return m.cfg }

// Call runs export with stdin as its input. decode, when not nil, receives the output while the
// instance is still held (the bytes are valid only during decode); an error from decode fails
// the call as KindInvalidJSON and the instance is replaced, as after a trap, timeout or exit.
//
// # Notes
//
//   - The call is bounded by the module's timeout and ctx's deadline, whichever comes first;
//     waiting for a pooled instance counts against the same bound.
func (m *Module) Call(ctx context.Context, export string, stdin []byte, decode func(stdout []byte) error) (err error) {
	return m.with(ctx, export, nil, func(inst *instance, deadline time.Time) error {
		return inst.call(ctx, export, stdin, deadline, decode)
	})
}

// with runs use on an instance (pooled, or fresh with args) under the call's deadline and
// records the call's metrics.
func (m *Module) with(ctx context.Context, export string, args []string, use func(inst *instance, deadline time.Time) error) (err error) {
	began := time.Now()
	defer func() {
		m.observer.ObserveCall(m.cfg.Name, export, time.Since(began))
		var ce *CallError
		if errors.As(err, &ce) {
			m.observer.ObserveError(m.cfg.Name, export, ce.Kind)
		}
	}()
	if m.closed.Load() {
		return &CallError{Module: m.cfg.Name, Export: export, Kind: KindClosed}
	}
	deadline := time.Now().Add(m.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if m.cfg.Isolation == Fresh {
		inst, err := m.freshInstance(ctx, args)
		if err != nil {
			return &CallError{Module: m.cfg.Name, Export: export, Kind: KindTrap, Err: err}
		}
		defer inst.close()
		return use(inst, deadline)
	}
	inst, err := m.acquire(ctx, export, deadline)
	if err != nil {
		return err
	}
	m.observer.ObservePool(m.cfg.Name, m.cfg.PoolSize, len(m.pool))
	err = use(inst, deadline)
	m.release(inst, err)
	m.observer.ObservePool(m.cfg.Name, m.cfg.PoolSize, len(m.pool))
	return err
}

// freshInstance returns the spare instance when args are its arguments (and has the next one
// made in the background), or a new instance.
func (m *Module) freshInstance(ctx context.Context, args []string) (*instance, error) {
	if m.spare != nil && slices.Equal(args, m.cfg.SpareArgs) {
		defer m.refillSpare()
		select {
		case inst := <-m.spare:
			return inst, nil
		default:
		}
	}
	return m.newInstanceArgs(ctx, args)
}

// refillSpare makes the next spare instance in the background, unless one is there or being
// made. A failure leaves the slot empty; the next call makes its own instance and tries again.
func (m *Module) refillSpare() {
	if m.closed.Load() || len(m.spare) > 0 || !m.refilling.CompareAndSwap(false, true) {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.refilling.Store(false)
		inst, err := m.newInstanceArgs(context.Background(), m.cfg.SpareArgs)
		if err != nil {
			return
		}
		select {
		case m.spare <- inst:
		default:
			inst.close()
		}
	}()
}

func (m *Module) acquire(ctx context.Context, export string, deadline time.Time) (*instance, error) {
	var inst *instance
	select {
	case inst = <-m.pool:
	default:
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		select {
		case inst = <-m.pool:
		case <-timer.C:
			return nil, &CallError{Module: m.cfg.Name, Export: export, Kind: KindBusy,
				Err: fmt.Errorf("all %d instances busy until the deadline", m.cfg.PoolSize)}
		case <-ctx.Done():
			return nil, &CallError{Module: m.cfg.Name, Export: export, Kind: KindBusy, Err: ctx.Err()}
		}
	}
	if inst != nil {
		return inst, nil
	}
	inst, err := m.newInstance(ctx)
	if err != nil {
		m.pool <- nil // keep the slot
		return nil, &CallError{Module: m.cfg.Name, Export: export, Kind: KindTrap, Err: fmt.Errorf("create instance: %w", err)}
	}
	return inst, nil
}

// release returns a healthy instance to the pool; a faulted one is closed and replaced in the
// background so the next caller does not pay for the new instance.
func (m *Module) release(inst *instance, callErr error) {
	if !inst.broken && !m.closed.Load() {
		m.pool <- inst
		return
	}
	inst.close()
	if m.closed.Load() {
		m.pool <- nil
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fresh, err := m.newInstance(context.Background())
		if err != nil {
			m.pool <- nil // the next acquire tries again
			return
		}
		m.pool <- fresh
	}()
}

// Close closes the module's instances and its compiled code.
func (m *Module) Close(ctx context.Context) error {
	if m.closed.Swap(true) {
		return nil
	}
	m.wg.Wait()
	if m.spare != nil {
		select {
		case inst := <-m.spare:
			inst.close()
		default:
		}
	}
	if m.pool != nil {
		for i := 0; i < cap(m.pool); i++ {
			select {
			case inst := <-m.pool:
				if inst != nil {
					inst.close()
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if m.pool != nil {
		m.observer.ObservePool(m.cfg.Name, 0, 0)
	}
	if m.compiled != nil {
		return m.compiled.Close(ctx)
	}
	return nil
}

// callError makes a CallError of this module found after the call itself (in the answer) and
// reports it to the observer.
func (m *Module) callError(export string, kind ErrorKind, err error) *CallError {
	m.observer.ObserveError(m.cfg.Name, export, kind)
	return &CallError{Module: m.cfg.Name, Export: export, Kind: kind, Err: err}
}
