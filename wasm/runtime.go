// Package wasm is the core of wasmkube's WebAssembly host: it checks and meters modules, compiles
// them once, and runs their exported functions in pooled (or fresh) instances inside a sandbox.
// It knows no ABI and imports nothing of Kubernetes: an ABI (package envelope, the original
// proof of concept's; package kubewarden, Kubewarden's) adds its host modules with
// Runtime.DefineHost, makes its calls with Module.Invoke and serves its host functions through
// CallFrom. Package hook turns the answers into the API server's decisions.
//
// # The sandbox
//
// Every call is bounded in time and every instance in memory, whatever the module does:
//
//   - Time: when a module is loaded its code is metered (package wasmbin): function entries,
//     loop headers and bulk instructions pay fuel, and whenever a budget of fuel is used up the
//     code calls the host, which ends the call once its deadline has passed. The guest does at
//     most about a million instructions' worth of work between two such calls.
//   - Memory: linear memory is capped at the module's memory limit, its tables together at a
//     64th of it in elements (8 bytes each), and an estimate of its call stack at half of it;
//     linear memory is mapped per instance and returned to the system when the instance closes
//     (resident WASI instances keep a saved copy besides: ModuleConfig.Snapshot).
//   - Data: stdout, host-call payloads and answers, and log lines are bounded per call.
//   - Capabilities: no files, environment, arguments or network unless granted (Grants).
package wasm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Names of the host functions the metered code calls.
const (
	HostModule    = "wasmkube"
	checkFunction = "check_deadline"
	stackFunction = "stack_exhausted"
	// fuelBudget is the fuel between two deadline checks, about one instruction per unit: a
	// runaway module is stopped within ~1 ms of its deadline, and the check costs nothing
	// measurable (docs/rationale.md).
	fuelBudget = 1 << 20
)

// RuntimeConfig configures a Runtime.
type RuntimeConfig struct {
	// CacheDir keeps compiled modules on disk across restarts; empty: in memory only.
	CacheDir string
	// Logger receives the runtime's logs; slog.Default() when nil.
	Logger *slog.Logger
	// Observer, when set, is told about every call and pool change (package wasm/metrics).
	Observer Observer
}

// Observer receives what metrics need; it must be cheap and safe for concurrent use.
type Observer interface {
	// ObserveCall reports one finished call of export, successful or not.
	ObserveCall(module, export string, elapsed time.Duration)
	// ObserveError reports why a call failed.
	ObserveError(module, export string, kind ErrorKind)
	// ObservePool reports a pooled module's size and idle instances (size 0: closed).
	ObservePool(module string, size, idle int)
}

type nopObserver struct{}

func (nopObserver) ObserveCall(string, string, time.Duration) {}
func (nopObserver) ObserveError(string, string, ErrorKind)    {}
func (nopObserver) ObservePool(string, int, int)              {}

// Runtime hosts modules. One runtime serves one cluster; it is safe for concurrent use.
type Runtime struct {
	logger   *slog.Logger
	observer Observer
	cache    wazero.CompilationCache
	rt       wazero.Runtime
	active   *activity
	hosts    hosts
	// residentHosts numbers the WASI host modules of resident instances (one per module), so
	// that their names are unique without naming a heap address in a guest-visible error.
	residentHosts atomic.Uint64
}

// NewRuntime creates a runtime with the compiler engine and the WASI and wasmkube host modules;
// an ABI adds its own with DefineHost.
func NewRuntime(ctx context.Context, cfg RuntimeConfig) (_ *Runtime, err error) {
	r := &Runtime{logger: cfg.Logger, observer: cfg.Observer, active: &activity{}}
	if r.logger == nil {
		r.logger = slog.Default()
	}
	if r.observer == nil {
		r.observer = nopObserver{}
	}
	if cfg.CacheDir != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("module compilation cache: %w", err)
		}
		if r.cache, err = wazero.NewCompilationCacheWithDir(filepath.Clean(cfg.CacheDir)); err != nil {
			return nil, fmt.Errorf("module compilation cache %s: %w", cfg.CacheDir, err)
		}
	} else {
		r.cache = wazero.NewCompilationCache()
	}
	rcfg := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(r.cache).
		WithCustomSections(true)
	r.rt = wazero.NewRuntimeWithConfig(ctx, rcfg)
	defer func() {
		if err != nil {
			_ = r.Close(ctx)
		}
	}()
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r.rt); err != nil {
		return nil, fmt.Errorf("instantiate WASI: %w", err)
	}
	_, err = r.rt.NewHostModuleBuilder(HostModule).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(checkDeadline), nil, nil).Export(checkFunction).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(stackExhausted), nil, nil).Export(stackFunction).
		Instantiate(ctx)
	if err != nil {
		return nil, fmt.Errorf("instantiate host module %s: %w", HostModule, err)
	}
	return r, nil
}

// closeWait bounds Runtime.Close when its context has no deadline.
const closeWait = time.Minute

// Close closes every module and the runtime.
//
// # Notes
//
//   - Calls and instantiations that run finish first (each ends by its deadline); new ones
//     fail. When ctx ends before they finish, Close returns an error and leaves the runtime
//     open under them: closing an instance under its running code would crash the process.
//   - Without a deadline in ctx, Close waits at most a minute (a module not metered may never
//     return).
//   - Close the modules first (Module.Close): it lets calls waiting for an instance finish too.
func (r *Runtime) Close(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, closeWait)
		defer cancel()
	}
	if err := r.active.close(ctx); err != nil {
		return fmt.Errorf("close module runtime: %w", err)
	}
	return errors.Join(r.rt.Close(ctx), r.cache.Close(ctx))
}

// checkDeadline is what metered code calls whenever its fuel is used up (about five times in a
// call of magic-validate). It ends the call by panicking, which wazero turns into an error of the
// running call. It and stackExhausted are Go module functions, not WithFunc's reflection: a
// call through reflection costs a microsecond more.
func checkDeadline(ctx context.Context, _ api.Module, _ []uint64) {
	if inst, _ := ctx.Value(instanceKey{}).(*instance); inst != nil {
		if err := inst.expired(); err != nil {
			panic(err)
		}
	}
}

// errStackExhausted ends a call whose estimated stack passed the module's stack limit.
var errStackExhausted = errors.New("call stack exhausted")

// stackExhausted is what metered code calls when its stack estimate passes the limit.
func stackExhausted(context.Context, api.Module, []uint64) { panic(errStackExhausted) }
