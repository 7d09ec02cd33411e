// Package wasm is wasmkube's WebAssembly host: it compiles modules once, runs their exported
// functions in pooled (or fresh) instances under a timeout, a memory limit and an output limit,
// and speaks the module ABI of the original proof of concept (a JSON envelope on WASI stdin and
// stdout). Typed helpers map Kubernetes authentication, authorization and admission reviews in
// and out of that envelope. It never imports k8s.io/kubernetes, so its tests link fast.
//
// # Stopping a module
//
// A module must never hang its caller. wazero's close-on-context-done makes the compiled code call
// out to Go at every loop iteration, which costs ~5× on a JSON-heavy guest. Instead, when a module
// is loaded, a counter is inserted at every loop header (package wasmbin) that calls the host only
// every few thousand iterations; the host then ends the call if its deadline has passed. A module
// whose code cannot be rewritten falls back to close-on-context-done; a module explicitly marked
// trusted gets neither (see docs/rationale.md for the measurements).
package wasm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Names of the host function the inserted loop checks call.
const (
	HostModule    = "wasmkube"
	checkFunction = "check_deadline"
	// checkInterval is the number of loop iterations between two deadline checks: a tight loop
	// iteration takes about a nanosecond, so a runaway module is stopped within ~10 µs of its
	// deadline, and the check (~50 ns) costs under 1 %.
	checkInterval = 10000
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
	// fast runs modules whose loops check their deadline themselves.
	fast wazero.Runtime
	// safe runs the others with wazero's close-on-context-done; created on first use.
	safeOnce sync.Once
	safe     wazero.Runtime
	safeErr  error
}

// NewRuntime creates a runtime with the compiler engine and the WASI and wasmkube host modules.
func NewRuntime(ctx context.Context, cfg RuntimeConfig) (_ *Runtime, err error) {
	r := &Runtime{logger: cfg.Logger, observer: cfg.Observer}
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
	if r.fast, err = r.newWazero(ctx, false); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Runtime) newWazero(ctx context.Context, closeOnContextDone bool) (wazero.Runtime, error) {
	cfg := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(r.cache).
		WithCloseOnContextDone(closeOnContextDone).
		WithCustomSections(true)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("instantiate WASI: %w", err)
	}
	_, err := rt.NewHostModuleBuilder(HostModule).
		NewFunctionBuilder().WithFunc(checkDeadline).Export(checkFunction).
		Instantiate(ctx)
	if err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("instantiate host module %s: %w", HostModule, err)
	}
	if err := instantiateWAPC(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	return rt, nil
}

func (r *Runtime) safeRuntime(ctx context.Context) (wazero.Runtime, error) {
	r.safeOnce.Do(func() { r.safe, r.safeErr = r.newWazero(ctx, true) })
	return r.safe, r.safeErr
}

// Close closes every module and the runtime.
func (r *Runtime) Close(ctx context.Context) error {
	errs := []error{r.fast.Close(ctx)}
	if r.safe != nil {
		errs = append(errs, r.safe.Close(ctx))
	}
	errs = append(errs, r.cache.Close(ctx))
	return errors.Join(errs...)
}

// checkDeadline is the host function the inserted loop checks call. It ends the call by
// panicking, which wazero turns into an error of the running call.
func checkDeadline(ctx context.Context, _ api.Module) {
	inst, _ := ctx.Value(instanceKey{}).(*instance)
	if inst == nil {
		return
	}
	if err := inst.expired(); err != nil {
		panic(err)
	}
}
