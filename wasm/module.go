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
	// InterruptMetered meters the module's code (the default): function entries, loop headers
	// and bulk instructions pay fuel, and the host checks the deadline whenever a budget of it
	// is used up. Recursion is bounded by a stack estimate.
	InterruptMetered Interrupt = "metered"
	// InterruptNone stops nothing: for trusted modules only. A module that loops or recurses
	// forever then blocks its caller forever and stalls the Go garbage collector of the whole
	// process. Memory and table limits still hold.
	InterruptNone Interrupt = "none"
)

// Defaults of ModuleConfig.
const (
	DefaultTimeout        = 2 * time.Second
	DefaultMemoryLimit    = 64 << 20
	DefaultMaxOutputBytes = 4 << 20
	pageSize              = 64 << 10
	stderrTail            = 1 << 10
	// tableEntryBytes is what one table element costs the host (a pointer); tables together
	// may take an eighth of the memory limit.
	tableEntryBytes = 8
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
	// PoolSize bounds concurrent calls: the instances of a pooled module (made when calls
	// need them: one at load, another only when a call finds every instance busy), the
	// instances a fresh module has at a time. Default runtime.NumCPU().
	PoolSize int
	// Timeout bounds one call; DefaultTimeout when zero.
	Timeout time.Duration
	// MemoryLimit bounds an instance's linear memory in bytes (rounded up to 64 KiB pages);
	// DefaultMemoryLimit when zero. Tables may hold MemoryLimit/64 elements together and the
	// estimated call stack may take MemoryLimit/2 bytes.
	MemoryLimit int64
	// MaxOutputBytes bounds what a call may write to stdout (or hand back through waPC);
	// DefaultMaxOutputBytes when zero.
	MaxOutputBytes int
	// MaxHostCallBytes bounds what one call exchanges through host calls, requests and
	// answers together; a quarter of MemoryLimit (at least 1 MiB) when zero: the guest has to
	// hold the answers in its memory anyway.
	MaxHostCallBytes int
	// Interrupt picks how overrunning calls are stopped; InterruptMetered when empty.
	Interrupt Interrupt
	Grants    Grants
	// StartFunctions run once when an instance is created, those the module exports, in order;
	// default _initialize (Go and Rust reactors).
	StartFunctions []string
	// SpareArgs are the arguments of the spare instance a Fresh module keeps ready for its
	// next call (nil: Grants.Args); calls with other arguments create their own instance.
	SpareArgs []string
	// Snapshot, for a Fresh module that is a WASI command, keeps up to PoolSize instances that
	// ran _start up to their first read of stdin and starts every call with SpareArgs from
	// there (see resident.go); calls fall back to fresh instances when the module does not
	// allow it (a log line says why).
	//
	// # Notes
	//
	//   - Residents come on top of the PoolSize fresh instances a module may have at a time:
	//     up to 2×PoolSize+1 instances, and each resident also keeps a saved copy of its memory,
	//     so it may hold up to twice MemoryLimit (issue 11's attacker review; not yet bounded).
	Snapshot bool
	// DefineMemory, when set, names a memory the module imports (OPA's env.memory) that each
	// instance defines for itself instead, capped at MemoryLimit: the host needs no module
	// exporting it, and host functions read it as the module's memory.
	DefineMemory *ImportName
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
	if c.MaxHostCallBytes <= 0 {
		c.MaxHostCallBytes = int(min(max(c.MemoryLimit/4, 1<<20), 1<<30))
	}
	if c.Interrupt == "" {
		c.Interrupt = InterruptMetered
	}
	if c.StartFunctions == nil {
		c.StartFunctions = []string{"_initialize"}
	}
	return c
}

// stackLimit is the bound of a call's estimated stack: half the memory limit, within
// [1 MiB, 1 GiB].
func (c ModuleConfig) stackLimit() uint32 {
	return uint32(min(max(c.MemoryLimit/2, 1<<20), 1<<30))
}

// startBudget bounds the creation of an instance that no call waits for: the module's timeout,
// at least DefaultTimeout (a Go guest's runtime start-up takes milliseconds).
func (c ModuleConfig) startBudget() time.Duration { return max(c.Timeout, DefaultTimeout) }

// ImportName is an import's module and name.
type ImportName struct{ Module, Name string }

// Module is a compiled module with its instances.
type Module struct {
	cfg      ModuleConfig
	observer Observer
	logger   *slog.Logger
	logs     *logLimiter
	hash     string
	rt       wazero.Runtime
	active   *activity
	compiled wazero.CompiledModule
	// pool holds a pooled module's instances (see pool). slots bounds a fresh module's
	// instances in use.
	pool  *pool
	slots chan struct{}
	// spare holds one instance of a Fresh module made ahead of its next call, so the call does
	// not wait for instantiation (and the start functions); refilling says one is being made.
	spare     chan *instance
	refilling atomic.Bool
	// res holds the resident instances of a module with Snapshot (nil without).
	res *residents
	// observing makes reading the pool's length and reporting it one step, so that the last
	// report is never an older length than one reported before it.
	observing sync.Mutex
	// mu orders closing against starting background work: once closed is set under mu, no
	// goroutine is added to wg.
	mu     sync.Mutex
	closed atomic.Bool
	wg     sync.WaitGroup
}

// Load compiles bin and creates and initializes its first instance (a pooled module makes the
// others when concurrent calls need them, up to PoolSize; a fresh module keeps it as the spare).
//
// # Notes
//
//   - The module is checked and metered before it is compiled (package wasmbin): a module that
//     is invalid, or uses WebAssembly beyond 2.0, fails to load with an error saying why.
//   - The module's memory is capped at MemoryLimit; a module that needs more at start fails to load.
//   - The instance made at load (and its start functions) must be ready within ctx's deadline
//     and the module's start budget (its timeout, at least DefaultTimeout).
//   - Compilation is cached by content (see RuntimeConfig.CacheDir).
func (r *Runtime) Load(ctx context.Context, bin []byte, cfg ModuleConfig) (_ *Module, err error) {
	cfg = cfg.withDefaults()
	if cfg.Interrupt != InterruptMetered && cfg.Interrupt != InterruptNone {
		return nil, fmt.Errorf("module %q: interrupt %q: want %s or %s", cfg.Name, cfg.Interrupt, InterruptMetered, InterruptNone)
	}
	for _, d := range cfg.Grants.ReadOnlyDirs {
		if st, err := os.Stat(d.HostPath); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("module %q: grants: %s is not a directory to mount at %s", cfg.Name, d.HostPath, d.GuestPath)
		}
	}
	sum := sha256.Sum256(bin)
	m := &Module{cfg: cfg, hash: hex.EncodeToString(sum[:]), observer: r.observer, logger: r.logger, rt: r.rt, active: r.active}
	m.logs = newLogLimiter(r.logger.With("module", cfg.Name))
	res, err := wasmbin.Rewrite(bin, m.rewriteOptions())
	if err != nil {
		return nil, fmt.Errorf("module %q: %w", cfg.Name, err)
	}
	if m.compiled, err = m.rt.CompileModule(ctx, res.Binary); err != nil {
		return nil, fmt.Errorf("module %q: compile: %w", cfg.Name, err)
	}
	defer func() {
		if err != nil {
			_ = m.compiled.Close(context.Background())
		}
	}()
	exported := m.compiled.ExportedFunctions()
	for _, e := range cfg.Exports {
		if _, ok := exported[e]; !ok {
			return nil, fmt.Errorf("missing function '%s' in module '%s'", e, cfg.Name)
		}
	}
	deadline := time.Now().Add(cfg.startBudget())
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	switch cfg.Isolation {
	case Fresh:
		// The spare is made now: a module that cannot be instantiated fails to load.
		inst, err := m.newInstance(ctx, cfg.SpareArgs, deadline)
		if err != nil {
			return nil, err
		}
		m.slots, m.spare = make(chan struct{}, cfg.PoolSize), make(chan *instance, 1)
		m.spare <- inst
		m.initResidents(ctx, r, res)
	default:
		// One instance proves the module instantiates; calls make more on demand (see pool).
		inst, err := m.newInstance(ctx, nil, deadline)
		if err != nil {
			return nil, err
		}
		m.pool = newPool(cfg.PoolSize)
		m.pool.push(inst)
		m.observePool()
	}
	return m, nil
}

// rewriteOptions are the module's limits as the rewrite applies them.
func (m *Module) rewriteOptions() wasmbin.Options {
	opts := wasmbin.Options{
		MaxMemoryPages:   uint32((m.cfg.MemoryLimit + pageSize - 1) / pageSize),
		MaxTableElements: uint32(min(m.cfg.MemoryLimit/(8*tableEntryBytes), 1<<31)),
	}
	if m.cfg.Interrupt == InterruptMetered {
		opts.HostModule = HostModule
		opts.CheckName, opts.Budget = checkFunction, fuelBudget
		opts.StackName, opts.StackLimit = stackFunction, m.cfg.stackLimit()
	}
	if d := m.cfg.DefineMemory; d != nil {
		opts.DefineMemory = &wasmbin.ImportName{Module: d.Module, Name: d.Name}
	}
	if m.cfg.Snapshot && m.cfg.Isolation == Fresh {
		opts.ExportGlobals = residentGlobals
	}
	return opts
}

// Name is the module's configured name.
func (m *Module) Name() string { return m.cfg.Name }

// Hash is the SHA-256 of the module's original bytes, hex-encoded.
func (m *Module) Hash() string { return m.hash }

// Interrupt is how overrunning calls of this module are stopped.
func (m *Module) Interrupt() Interrupt { return m.cfg.Interrupt }

// Config is the module's configuration with defaults applied.
func (m *Module) Config() ModuleConfig { return m.cfg }

// Call runs export with stdin as its input. decode, when not nil, receives the output while the
// instance is still held (the bytes are valid only during decode); an error from decode fails
// the call as KindInvalidJSON and the instance is replaced, as after a trap, timeout or exit.
//
// # Notes
//
//   - The call is bounded by the module's timeout and ctx's deadline, whichever comes first;
//     waiting for an instance (and creating one) counts against the same bound.
func (m *Module) Call(ctx context.Context, export string, stdin []byte, decode func(stdout []byte) error) error {
	var handle func(Result) error
	if decode != nil {
		handle = func(r Result) error { return decode(r.Stdout) }
	}
	return m.Invoke(ctx, Invocation{Export: export, Stdin: stdin}, handle)
}

// Invocation is one call of a module's export, as an ABI makes it.
type Invocation struct {
	// Export is the function to call.
	Export string
	// Name names the call in errors and metrics (a waPC operation, a command's argument);
	// Export when empty.
	Name string
	// Params are the function's arguments.
	Params []uint64
	// Stdin is the call's standard input.
	Stdin []byte
	// Args, when not nil, are the argv of a fresh instance made for this call (a WASI command);
	// the module must be Fresh. Nil: the instance has the granted arguments.
	Args []string
	// State is handed to the ABI's host functions for the duration of the call (Call.State).
	State any
}

func (inv Invocation) name() string {
	if inv.Name != "" {
		return inv.Name
	}
	return inv.Export
}

// Result is what a call returned: the function's results and its standard output. Stdout is
// valid only until the handler that receives it returns.
type Result struct {
	Results []uint64
	Stdout  []byte
}

// Invoke makes the call inv describes and hands its result to handle (when not nil) while the
// instance is held.
//
// # Notes
//
//   - The bounds of Call hold: the module's timeout and ctx's deadline, waiting included.
//   - Output past MaxOutputBytes fails the call with KindOutputTooLarge.
//   - An error from handle fails the call: a *CallError keeps its kind (KindInvalidJSON and
//     KindMissingResponse replace the instance, as a trap does), any other error is
//     KindInvalidJSON and replaces the instance. Either is reported to the observer.
func (m *Module) Invoke(ctx context.Context, inv Invocation, handle func(Result) error) error {
	return m.with(ctx, inv.name(), inv.Args, func(inst *instance, deadline time.Time) error {
		return inst.invoke(ctx, inv, deadline, handle)
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
		return m.withFresh(ctx, export, args, deadline, use)
	}
	inst, err := m.acquire(ctx, export, deadline)
	if err != nil {
		return err
	}
	m.observePool()
	done := false
	defer func() {
		if !done { // use panicked: the instance's state is unknown
			inst.broken = true
		}
		m.release(inst)
		m.observePool()
	}()
	err = use(inst, deadline)
	done = true
	return err
}

// withFresh runs use on a fresh instance, one of at most PoolSize at a time.
func (m *Module) withFresh(ctx context.Context, export string, args []string, deadline time.Time, use func(*instance, time.Time) error) error {
	if err := m.take(ctx, m.slots, export, deadline); err != nil {
		return err
	}
	defer func() { <-m.slots }()
	if inst := m.takeResident(ctx, args, deadline); inst != nil {
		return m.withResident(inst, deadline, use)
	}
	inst, err := m.freshInstance(ctx, args, deadline)
	if err != nil {
		return m.instanceError(export, err)
	}
	defer inst.close()
	return use(inst, deadline)
}

// instanceError is the CallError of an instance that could not be made for a call.
func (m *Module) instanceError(export string, err error) error {
	var ce *CallError
	if errors.As(err, &ce) {
		ce.Export = export
		return ce
	}
	return &CallError{Module: m.cfg.Name, Export: export, Kind: KindTrap, Err: fmt.Errorf("create instance: %w", err)}
}

// freshInstance returns the spare instance when args are its arguments (and has the next one
// made in the background), or a new instance made under the call's deadline.
func (m *Module) freshInstance(ctx context.Context, args []string, deadline time.Time) (*instance, error) {
	if m.spare != nil && slices.Equal(args, m.cfg.SpareArgs) {
		defer m.refillSpare()
		select {
		case inst := <-m.spare:
			return inst, nil
		default:
		}
	}
	return m.newInstance(ctx, args, deadline)
}

// background runs f in a goroutine that Close waits for, unless the module is closed.
func (m *Module) background(f func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
	return true
}

// refillSpare makes the next spare instance in the background, unless one is there or being
// made. A failure leaves the slot empty; the next call makes its own instance and tries again.
func (m *Module) refillSpare() {
	if len(m.spare) > 0 || !m.refilling.CompareAndSwap(false, true) {
		return
	}
	started := m.background(func() {
		defer m.refilling.Store(false)
		inst, err := m.newInstance(context.Background(), m.cfg.SpareArgs, time.Now().Add(m.cfg.startBudget()))
		if err != nil {
			return
		}
		select {
		case m.spare <- inst:
		default:
			inst.close()
		}
	})
	if !started {
		m.refilling.Store(false)
	}
}

// observePool reports the pool's size and idle instances.
func (m *Module) observePool() {
	m.observing.Lock()
	defer m.observing.Unlock()
	if m.closed.Load() {
		return // Close reported the pool gone
	}
	m.observer.ObservePool(m.cfg.Name, m.cfg.PoolSize, m.pool.free())
}

// Close closes the module's instances and its compiled code. Calls that run finish first, each
// within its own deadline; ctx bounds the wait (and, without a deadline, the module's timeout
// plus its start budget, which every call and instance creation ends within).
func (m *Module) Close(ctx context.Context) error {
	m.mu.Lock()
	already := m.closed.Swap(true)
	m.mu.Unlock()
	if already {
		return nil
	}
	m.stopResidents()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.cfg.Timeout+m.cfg.startBudget())
		defer cancel()
	}
	if err := m.waitBackground(ctx); err != nil {
		return err
	}
	if m.spare != nil {
		select {
		case inst := <-m.spare:
			inst.close()
		default:
		}
	}
	if m.pool != nil {
		if err := m.closePool(ctx); err != nil {
			return err
		}
	}
	if m.slots != nil {
		for i := 0; i < cap(m.slots); i++ {
			select {
			case m.slots <- struct{}{}:
			case <-ctx.Done():
				return fmt.Errorf("close module %q: %d instances still in use: %w", m.cfg.Name, cap(m.slots)-i, ctx.Err())
			}
		}
	}
	m.closeResidentHost()
	if m.compiled != nil {
		return m.compiled.Close(context.Background())
	}
	return nil
}

// waitBackground waits for the instances being made in the background, within ctx.
func (m *Module) waitBackground(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close module %q: instances still being made: %w", m.cfg.Name, ctx.Err())
	}
}

// Fail makes the CallError of a failure an ABI found after the call itself (in the module's
// answer) and reports it to the observer. export names the call, as Invocation.Name does.
func (m *Module) Fail(export string, kind ErrorKind, err error) *CallError {
	m.observer.ObserveError(m.cfg.Name, export, kind)
	return &CallError{Module: m.cfg.Name, Export: export, Kind: kind, Err: err}
}
