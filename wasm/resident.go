package wasm

// Resident instances of WASI commands (ModuleConfig.Snapshot): an instance runs _start once,
// in its own goroutine, up to the guest's first read of stdin; there the host saves the
// linear memory and the mutable globals and wazero's experimental Snapshotter saves the call
// stack. Each call then feeds that read its stdin; when the guest exits, its answer goes back
// to the caller, memory and globals are copied back and the stack is restored, so that the
// read "returns again" for the next call, as if a fresh instance had just started. The
// decisions and what differs from a fresh start are in docs/rationale.md ("WASI-mode calls
// start from a snapshot").

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/wasmkube/wasmkube/wasm/internal/wasmbin"
)

const (
	// residentWASI is the WASI host module resident instances import instead of
	// wasi_snapshot_preview1: the same functions, with fd_read and proc_exit of their own.
	residentWASI = "wasmkube:resident:wasi_snapshot_preview1"
	// residentGlobals prefixes the exports the rewrite adds for the module's mutable globals.
	residentGlobals = "wasmkube:global:"
)

// WASI errno values.
const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoFault   = 21
	errnoIntr    = 27
	errnoIO      = 29
)

var (
	errResidentStopped = errors.New("resident instance stopped with its module")
	errResidentQuit    = errors.New("resident instance left broken by its call")
	errMemoryGrew      = errors.New("the call grew the memory, which a snapshot cannot shrink")
	errResidentRetired = errors.New("resident instance retired")
)

// maxResidentCalls is how many calls a resident serves before a new one takes its place.
// wazero's Snapshot copies the stack into a buffer 16 bytes longer than the stack, and Restore
// keeps that copy as the live stack: without a bound the stack, and what each call's snapshot
// copies, would grow by 16 bytes per call (16 KiB after this many; a new resident costs one
// start-up, a few milliseconds).
const maxResidentCalls = 1000

// residentKey marks the context of newInstance when the instance is to be a resident.
type residentKey struct{}

// residents are a module's resident instances: those idle, how many exist, and whether
// residents are used at all (off once one could not start, with a log line saying why).
type residents struct {
	m       *Module
	wasi    api.Module
	globals []string // export names of the module's mutable globals
	fuel    string   // the fuel's export name among them (it may differ between retries)
	idle    chan *instance
	stop    chan struct{} // closed by Module.Close
	count   atomic.Int32
	served  atomic.Int64 // calls served by residents
	retired atomic.Int64 // residents ended after a call (maxResidentCalls, a failed call)
	off     atomic.Bool
	offOnce sync.Once
}

// initResidents prepares resident instances for a Fresh module whose configuration asks for
// snapshots, when its code allows them (res is the rewrite's result), and starts the first one.
func (m *Module) initResidents(ctx context.Context, r *Runtime, res *wasmbin.Result) {
	if !m.cfg.Snapshot || m.cfg.Isolation != Fresh {
		return
	}
	reason := ""
	switch _, ok := m.compiled.ExportedFunctions()["_start"]; {
	case !ok:
		reason = "the module exports no _start"
	case len(m.cfg.Grants.ReadOnlyDirs) > 0:
		reason = "the module is granted directories (file state is not part of a snapshot)"
	case res.PrefixTaken:
		reason = "the module exports names under " + residentGlobals + ", where the host exports its globals"
	case res.StateOutsideMemory:
		reason = "the module changes tables, drops segments or imports mutable globals (state a snapshot does not hold)"
	}
	var wasi api.Module
	if reason == "" {
		var err error
		if wasi, err = defineResidentWASI(ctx, r.rt, fmt.Sprintf("%s:%d", residentWASI, r.residentHosts.Add(1))); err != nil {
			reason = err.Error()
		}
	}
	if reason != "" {
		m.logger.Info("WASI snapshots not used: every call starts a fresh instance", "module", m.cfg.Name, "reason", reason)
		return
	}
	m.res = &residents{m: m, wasi: wasi, globals: res.ExportedGlobals, fuel: res.FuelGlobal,
		idle: make(chan *instance, m.cfg.PoolSize), stop: make(chan struct{})}
	m.startResident()
}

// defineResidentWASI instantiates the WASI host module of a module's resident instances as
// name. It is one per module, not per runtime: wazero hands out only a wrapper of a host
// module instantiated through its builder, which an import resolver cannot use.
func defineResidentWASI(ctx context.Context, rt wazero.Runtime, name string) (api.Module, error) {
	b := rt.NewHostModuleBuilder(name)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	i32 := api.ValueTypeI32
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(residentRead), []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}).
		WithParameterNames("fd", "iovs", "iovs_len", "result.nread").Export("fd_read")
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(residentExit), []api.ValueType{i32}, nil).
		WithParameterNames("rval").Export("proc_exit")
	compiled, err := b.Compile(ctx)
	if err != nil {
		return nil, fmt.Errorf("compile host module %s: %w", name, err)
	}
	mod, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(name))
	if err != nil {
		_ = compiled.Close(ctx)
		return nil, fmt.Errorf("instantiate host module %s: %w", name, err)
	}
	return mod, nil
}

// residentsOff stops using residents for the module, saying why once.
func (rs *residents) residentsOff(err error) {
	rs.off.Store(true)
	rs.offOnce.Do(func() {
		rs.m.logger.Info("WASI snapshots not used: every call starts a fresh instance", "module", rs.m.cfg.Name, "reason", err.Error())
	})
}

// startResident starts one more resident in the background, unless PoolSize exist.
func (m *Module) startResident() {
	rs := m.res
	if rs.off.Load() || rs.count.Add(1) > int32(m.cfg.PoolSize) {
		rs.count.Add(-1)
		return
	}
	if !m.background(rs.run) {
		rs.count.Add(-1)
	}
}

// run makes a resident instance and runs it until it ends.
func (rs *residents) run() {
	m := rs.m
	ctx := context.WithValue(context.Background(), residentKey{}, rs)
	inst, err := m.newInstance(ctx, m.cfg.SpareArgs, time.Now().Add(m.cfg.startBudget()))
	if err != nil {
		rs.count.Add(-1)
		rs.residentsOff(fmt.Errorf("instantiate: %w", err))
		return
	}
	replace := inst.resident.run()
	rs.count.Add(-1)
	if replace {
		m.startResident()
	}
}

// residentWait bounds how long a call waits for a resident that is restoring itself after
// the previous call (well under a millisecond) or being replaced, before it takes a fresh
// instance instead.
const residentWait = 20 * time.Millisecond

// takeResident returns an idle resident for a call with args, or nil. When none is idle it has
// one more made if fewer than PoolSize exist, else waits a little for one (residentWait).
func (m *Module) takeResident(ctx context.Context, args []string, deadline time.Time) *instance {
	rs := m.res
	if rs == nil || rs.off.Load() || !slices.Equal(args, m.cfg.SpareArgs) {
		return nil
	}
	select {
	case inst := <-rs.idle:
		return inst
	default:
	}
	if rs.count.Load() < int32(m.cfg.PoolSize) {
		m.startResident()
		return nil
	}
	timer := time.NewTimer(min(time.Until(deadline), residentWait))
	defer timer.Stop()
	select {
	case inst := <-rs.idle:
		return inst
	case <-timer.C:
	case <-ctx.Done():
	}
	return nil
}

// withResident runs use on a resident instance, then lets it restore itself for the next call
// (or, when the call left it broken, stops it; a new one is made in its place).
func (m *Module) withResident(inst *instance, deadline time.Time, use func(*instance, time.Time) error) error {
	done := false
	r := inst.resident
	r.sent = false
	defer func() {
		switch {
		case !r.sent && inst.broken: // it ended before the call reached it
		case !r.sent: // the guest never saw the call: still idle
			m.res.idle <- inst
		case !done || inst.broken:
			r.quit()
		default:
			r.released <- struct{}{}
		}
	}()
	m.res.served.Add(1)
	err := use(inst, deadline)
	done = true
	return err
}

// stopResidents ends the idle residents and those that finish their call (Module.Close).
func (m *Module) stopResidents() {
	if m.res != nil {
		close(m.res.stop)
	}
}

// closeResidentHost closes the resident WASI module once no resident runs (Module.Close).
func (m *Module) closeResidentHost() {
	if m.res != nil {
		_ = m.res.wasi.Close(context.Background())
	}
}

// linkResident makes inst a resident when ctx asks for one: its WASI imports resolve to the
// resident WASI module.
func linkResident(ctx context.Context, inst *instance) {
	rs, _ := ctx.Value(residentKey{}).(*residents)
	if rs == nil {
		return
	}
	inst.resident = &resident{inst: inst, set: rs, request: make(chan struct{}), result: make(chan residentResult, 1),
		released: make(chan struct{}, 1), quitting: make(chan struct{}), done: make(chan struct{})}
	r := inst.resident
	inst.ctx = experimental.WithMemoryAllocator(inst.ctx, experimental.MemoryAllocatorFunc(func(min, max uint64) experimental.LinearMemory {
		r.lm = mapMemory(min, max)
		return r.lm
	}))
	inst.ctx = experimental.WithImportResolver(inst.ctx, func(name string) api.Module {
		if name == wasi_snapshot_preview1.ModuleName {
			return rs.wasi
		}
		return nil
	})
}

// residentPhase is where a resident's guest is.
type residentPhase int

const (
	phaseStart    residentPhase = iota // running its start-up, before its first read of stdin
	phaseProbe                         // the first read returned EINTR; the next saves the state
	phaseVerify                        // saved; the next read checks that a retry changes nothing
	phaseRestored                      // restored after a call; the next read is the snapshot point
	phaseCall                          // serving a call
)

// resident is the state of one resident instance; everything but the channels belongs to its
// goroutine (run), and to the caller between a request and its result.
type resident struct {
	inst     *instance
	set      *residents
	phase    residentPhase
	snap     experimental.Snapshot
	lm       experimental.LinearMemory // the instance's memory, as allocated
	memory   savedMemory
	globals  []api.MutableGlobal
	saved    []uint64
	active   bool // counted as running code (activity)
	answered bool // the call was answered; its caller releases the instance
	calls    int  // calls served; the resident retires after maxResidentCalls
	sent     bool // the caller's: the call reached the guest

	request  chan struct{}
	result   chan residentResult
	released chan struct{}
	quitting chan struct{}
	quitOnce sync.Once
	done     chan struct{}
}

// residentResult is how a call ended: the guest's exit code, or an error that ended _start
// (nil when _start returned).
type residentResult struct {
	exit  uint32
	err   error
	ended bool
}

func (r *resident) quit() { r.quitOnce.Do(func() { close(r.quitting) }) }

// run runs the guest's _start (with the snapshotter enabled) until the instance ends, and
// reports whether a new resident should take its place.
func (r *resident) run() (replace bool) {
	inst := r.inst
	defer close(r.done)
	defer inst.close()
	defer func() {
		if r.memory != nil {
			r.memory.release()
		}
	}()
	for _, name := range r.set.globals {
		g, ok := inst.mod.ExportedGlobal(name).(api.MutableGlobal)
		if !ok {
			r.set.residentsOff(fmt.Errorf("global %s is not exported as mutable", name))
			return false
		}
		r.globals = append(r.globals, g)
	}
	if err := r.enter(); err != nil {
		return false
	}
	_, err := inst.fn("_start").Call(experimental.WithSnapshotter(inst.ctx))
	r.leave()
	return r.ended(err)
}

// ended handles the end of _start: a start-up that never reached its snapshot turns
// residents off; a call not yet answered gets the error. It reports whether a new resident
// should take the place of this one (not after a stop).
func (r *resident) ended(err error) bool {
	rs := r.set
	switch {
	case r.phase < phaseRestored:
		if err == nil {
			err = errors.New("_start returned")
		}
		rs.residentsOff(fmt.Errorf("the command did not wait for stdin at start: %w", err))
		return false
	case r.phase == phaseCall && !r.answered:
		r.result <- residentResult{err: err, ended: true}
		if err == nil {
			rs.residentsOff(errors.New("_start returns after a call instead of exiting: a snapshot cannot resume it"))
		}
	}
	return !errors.Is(err, errResidentStopped)
}

// enter counts the resident as running code, unless the runtime is closing.
func (r *resident) enter() error {
	if r.active {
		return nil
	}
	if err := r.inst.m.active.enter(); err != nil {
		return err
	}
	r.active = true
	return nil
}

func (r *resident) leave() {
	if r.active {
		r.inst.m.active.exit()
		r.active = false
	}
}

// read is the guest's read of stdin: the probes of the start-up, the snapshot point, and the
// call's input.
func (r *resident) read(ctx context.Context, mod api.Module, iovs, n, nread uint32) uint32 {
	switch r.phase {
	case phaseStart:
		if len(r.inst.stdout.b) > 0 || r.inst.stderr.String() != "" {
			panic(errors.New("the command wrote output before reading stdin"))
		}
		r.phase = phaseProbe
		return errnoIntr
	case phaseProbe:
		r.save(mod)
		r.phase = phaseVerify
		return errnoIntr
	case phaseVerify:
		if err := r.verify(mod); err != nil {
			panic(err)
		}
		r.phase = phaseRestored
		fallthrough
	case phaseRestored:
		r.snap = experimental.GetSnapshotter(ctx).Snapshot()
		r.wait()
	}
	return r.serve(mod, iovs, n, nread)
}

// save copies the memory and the mutable globals.
func (r *resident) save(mod api.Module) {
	view, _ := mod.Memory().Read(0, mod.Memory().Size())
	r.memory = saveMemory(view, r.lm)
	r.saved = r.saved[:0]
	for _, g := range r.globals {
		r.saved = append(r.saved, g.Get())
	}
}

// verify checks that retrying the read after EINTR brought the guest back to the state saved
// at the previous read: then restoring that state and answering EINTR again is a fixed point,
// and every call starts from the same state.
func (r *resident) verify(mod api.Module) error {
	if len(r.inst.stdout.b) > 0 || r.inst.stderr.String() != "" {
		return errors.New("the command wrote output after a read of stdin was interrupted")
	}
	view, _ := mod.Memory().Read(0, mod.Memory().Size())
	if !bytes.Equal(view, r.memory.saved()) {
		return errors.New("retrying an interrupted read of stdin changed the memory")
	}
	for i, g := range r.globals {
		if r.set.globals[i] != r.set.fuel && g.Get() != r.saved[i] {
			return fmt.Errorf("retrying an interrupted read of stdin changed global %s", r.set.globals[i])
		}
	}
	return nil
}

// wait puts the resident in the idle pool and waits for a call (or for the module's Close, which
// ends the instance).
func (r *resident) wait() {
	r.leave()
	r.set.idle <- r.inst
	select {
	case <-r.request:
	case <-r.set.stop:
		panic(errResidentStopped)
	}
	r.answered = false
	r.phase = phaseCall
	if err := r.enter(); err != nil {
		panic(err)
	}
}

// serve copies the call's stdin into the guest's buffers (fd_read).
func (r *resident) serve(mod api.Module, iovs, n, nread uint32) uint32 {
	mem := mod.Memory()
	var total uint32
	for i := range n {
		base, ok1 := mem.ReadUint32Le(iovs + 8*i)
		size, ok2 := mem.ReadUint32Le(iovs + 8*i + 4)
		buf, ok3 := mem.Read(base, size)
		if !ok1 || !ok2 || !ok3 {
			return errnoFault
		}
		k, err := r.inst.stdin.Read(buf)
		total += uint32(k)
		if err != nil && err != io.EOF {
			return errnoIO
		}
		if k < len(buf) {
			break
		}
	}
	if !mem.WriteUint32Le(nread, total) {
		return errnoFault
	}
	return errnoSuccess
}

// exit is the guest's proc_exit during a call: the answer goes to the caller and, once the
// caller released the instance, the instance is restored to its snapshot, where the
// interrupted read is retried and waits for the next call. A memory that grew cannot be
// restored, and a caller that found the answer broken quits the instance: it ends and a new
// one is made.
func (r *resident) exit(mod api.Module, code uint32) {
	r.answered = true
	r.calls++
	// A call that failed or answered nothing may have left state the snapshot does not hold
	// (WASI's descriptor table: a closed or renumbered stdout would fail every later call, of
	// other users): the instance ends after it, as a fresh instance would.
	retire := code != 0 || len(r.inst.stdout.b) == 0 || r.calls >= maxResidentCalls
	r.result <- residentResult{exit: code}
	// The guest runs again only once the caller is done with the call's stdout and state.
	select {
	case <-r.released:
	case <-r.quitting:
		panic(errResidentQuit)
	}
	r.inst.stdin.reset(nil) // nothing of the call stays referenced while the resident is idle
	r.inst.stdout.reset()
	if retire {
		r.set.retired.Add(1)
		panic(errResidentRetired)
	}
	mem := mod.Memory()
	if mem.Size() != uint32(len(r.memory.saved())) {
		panic(errMemoryGrew)
	}
	view, _ := mem.Read(0, mem.Size())
	r.memory.restore(view)
	for i, g := range r.globals {
		g.Set(r.saved[i])
	}
	inst := r.inst
	inst.deadline, inst.callCtx, inst.state = time.Now().Add(inst.m.cfg.startBudget()), nil, nil
	r.phase = phaseRestored
	r.snap.Restore([]uint64{errnoIntr})
}

// call hands inv to the resident's guest and waits for its answer (instance.run).
func (r *resident) call(ctx context.Context, inv Invocation, deadline time.Time) ([]uint64, error) {
	inst := r.inst
	name := inv.name()
	if inv.Export != "_start" || inv.Params != nil {
		return nil, inst.fail(name, KindMissingExport, errors.New("a resident instance runs only _start"))
	}
	inst.stdin.reset(inv.Stdin)
	inst.stdout.reset()
	inst.stderr.reset()
	inst.deadline, inst.callCtx, inst.hostBytes, inst.state = deadline, ctx, 0, inv.State
	select {
	case r.request <- struct{}{}:
		r.sent = true
	case <-r.done:
		inst.broken = true
		return nil, inst.fail(name, KindClosed, errors.New("the resident instance ended before the call"))
	}
	res := <-r.result
	fail := func(kind ErrorKind, err error) error { return inst.fail(name, kind, err) }
	switch {
	case res.ended:
		inst.broken = true
		if exit := (*sys.ExitError)(nil); res.err == nil || errors.As(res.err, &exit) && exit.ExitCode() == 0 {
			return nil, nil
		}
		return nil, inst.classify(res.err, fail)
	case res.exit != 0:
		return nil, inst.classify(sys.NewExitError(res.exit), fail)
	}
	return nil, nil
}

// residentOf is the resident instance a host function of the resident WASI module serves.
func residentOf(ctx context.Context) *resident {
	if inst, _ := ctx.Value(instanceKey{}).(*instance); inst != nil {
		return inst.resident
	}
	return nil
}

// residentRead is fd_read of resident instances: stdin is the call's; they have no other
// readable descriptor (residents are never granted directories).
func residentRead(ctx context.Context, mod api.Module, stack []uint64) {
	r := residentOf(ctx)
	if r == nil || uint32(stack[0]) != 0 {
		stack[0] = errnoBadf
		return
	}
	stack[0] = uint64(r.read(ctx, mod, uint32(stack[1]), uint32(stack[2]), uint32(stack[3])))
}

// residentExit is proc_exit of resident instances: during a call, see resident.exit; otherwise
// what WASI's proc_exit does.
func residentExit(ctx context.Context, mod api.Module, stack []uint64) {
	code := uint32(stack[0])
	if r := residentOf(ctx); r != nil && r.phase == phaseCall {
		r.exit(mod, code)
	}
	_ = mod.CloseWithExitCode(ctx, code)
	panic(sys.NewExitError(code))
}
