package wasm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// faultsWasm is the test module built from testdata/faults for this test run.
var faultsWasm []byte

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wasm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "faults.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, "./testdata/faults")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build test module: %v\n%s", err, b)
		return 1
	}
	if faultsWasm, err = os.ReadFile(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func newRuntime(t testing.TB) *Runtime {
	t.Helper()
	return testRuntime(t, RuntimeConfig{CacheDir: filepath.Join(os.TempDir(), "wasmkube-test-cache")})
}

// testRuntime is a runtime with cfg that can load the faults module, closed when t ends.
func testRuntime(t testing.TB, cfg RuntimeConfig) *Runtime {
	t.Helper()
	r, err := NewRuntime(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	defineWAPCStandIn(t, r)
	return r
}

// defineWAPCStandIn defines stand-ins for the waPC host functions the faults module imports (it
// is a waPC guest too, testdata/faults/wapc.go); package kubewarden has the real ones. The
// runtime's tests never call the guest's waPC export: a stand-in that is called ends the call.
func defineWAPCStandIn(t testing.TB, r *Runtime) {
	t.Helper()
	err := r.DefineHost(context.Background(), "wapc stand-in", func(ctx context.Context, rt wazero.Runtime) error {
		i32 := api.ValueTypeI32
		b := rt.NewHostModuleBuilder("wapc")
		for _, name := range []string{"__guest_request", "__guest_response", "__guest_error"} {
			b = b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {
				panic(errors.New("the waPC host is package kubewarden's"))
			}), []api.ValueType{i32, i32}, nil).Export(name)
		}
		_, err := b.Instantiate(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func load(t testing.TB, r *Runtime, cfg ModuleConfig) *Module {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "faults"
	}
	m, err := r.Load(context.Background(), faultsWasm, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func settings(mode string) json.RawMessage { return json.RawMessage(`{"mode":"` + mode + `"}`) }

// exportValidate is the export of the faults module that the tests call.
const exportValidate = "validate"

// validate calls the faults module's validate export the way the envelope ABI does (package
// envelope makes these calls for real, and its tests check the envelope): {"request",
// "settings"} on stdin; the "response" member of the answer decoded into response, a non-empty
// "error" member failing the call as KindModuleError. An answer that is not JSON fails in
// decode, which Call turns into KindInvalidJSON.
func validate(ctx context.Context, m *Module, request any, settings json.RawMessage, response any) error {
	in, err := json.Marshal(struct {
		Request  any             `json:"request"`
		Settings json.RawMessage `json:"settings,omitempty"`
	}{request, settings})
	if err != nil {
		return err
	}
	var moduleErr string
	err = m.Call(ctx, exportValidate, in, func(stdout []byte) error {
		var out struct {
			Response json.RawMessage `json:"response"`
			Error    string          `json:"error"`
		}
		if err := json.Unmarshal(stdout, &out); err != nil {
			return fmt.Errorf("stdout is not a JSON envelope: %w", err)
		}
		if out.Error != "" {
			moduleErr = out.Error
			return nil
		}
		return json.Unmarshal(out.Response, response)
	})
	if err == nil && moduleErr != "" {
		return m.Fail(exportValidate, KindModuleError, errors.New(moduleErr))
	}
	return err
}

type anyResponse map[string]any

func call(m *Module, mode string) (anyResponse, error) {
	var out anyResponse
	var s json.RawMessage
	if mode != "" {
		s = settings(mode)
	}
	err := validate(context.Background(), m, map[string]string{"hello": "world"}, s, &out)
	return out, err
}

// TestFaults checks every error class of the runtime and that the module answers again
// afterwards.
func TestFaults(t *testing.T) {
	r := newRuntime(t)
	for _, interrupt := range []Interrupt{InterruptMetered} {
		m := load(t, r, ModuleConfig{PoolSize: 2, Timeout: 300 * time.Millisecond, MemoryLimit: 32 << 20, MaxOutputBytes: 1 << 20, Interrupt: interrupt})
		// Filling 32 MiB takes longer than 300 ms under the race detector.
		slow := load(t, r, ModuleConfig{PoolSize: 2, Timeout: 20 * time.Second, MemoryLimit: 32 << 20, Interrupt: interrupt})
		cases := []struct {
			mode   string
			kind   ErrorKind
			detail string
		}{
			// What the caller's decode makes of an answer: a module error, an answer that does
			// not decode (the envelope's own checks are package envelope's, tested there).
			{"error", KindModuleError, "the module says no"},
			{"garbage", KindInvalidJSON, "not a JSON envelope"},
			{"huge", KindOutputTooLarge, "1048576 bytes"},
			{"exit3", KindExit, "exited with code 3"},
			{"trap", KindTrap, "about to trap"},
			{"loop", KindTimeout, "timeout 300ms"},
			{"sleep", KindTimeout, "timeout 300ms"},
			{"memory", KindMemory, "limit 32 MiB"},
		}
		for _, c := range cases {
			t.Run(string(interrupt)+"/"+c.mode, func(t *testing.T) {
				m := m
				if c.mode == "memory" {
					m = slow
				}
				_, err := call(m, c.mode)
				if !IsKind(err, c.kind) {
					t.Fatalf("got %v, want kind %s", err, c.kind)
				}
				msg := err.Error()
				t.Log(msg)
				if !strings.Contains(msg, `module "faults"`) || !strings.Contains(msg, `export "validate"`) || !strings.Contains(msg, c.detail) {
					t.Errorf("error %q should name the module, the export and %q", msg, c.detail)
				}
				// The instance that failed is replaced; the module keeps answering.
				for i := 0; i < 3; i++ {
					if _, err := call(m, ""); err != nil {
						t.Fatalf("call %d after %s: %v", i, c.mode, err)
					}
				}
			})
		}
	}
}

func TestMissingExport(t *testing.T) {
	r := newRuntime(t)
	_, err := r.Load(context.Background(), faultsWasm, ModuleConfig{Name: "faults", Exports: []string{"admit"}})
	if err == nil || err.Error() != "missing function 'admit' in module 'faults'" {
		t.Fatalf("got %v", err)
	}
	m := load(t, r, ModuleConfig{})
	err = m.Call(context.Background(), "mutate", nil, nil)
	if !IsKind(err, KindMissingExport) {
		t.Fatalf("got %v", err)
	}
}

func TestMemoryLimitBelowModuleMinimum(t *testing.T) {
	_, err := newRuntime(t).Load(context.Background(), faultsWasm, ModuleConfig{Name: "faults", MemoryLimit: 64 << 10})
	if err == nil || !strings.Contains(err.Error(), "more than the limit") {
		t.Fatalf("got %v", err)
	}
}

func TestPooledInstancesAreReused(t *testing.T) {
	m := load(t, newRuntime(t), ModuleConfig{PoolSize: 1})
	for want := 1.0; want <= 3; want++ {
		out, err := call(m, "count")
		if err != nil {
			t.Fatal(err)
		}
		if out["calls"] != want {
			t.Fatalf("pooled instance served %v calls, want %v", out["calls"], want)
		}
	}
}

func TestFreshInstancePerCall(t *testing.T) {
	m := load(t, newRuntime(t), ModuleConfig{Isolation: Fresh})
	for i := 0; i < 3; i++ {
		out, err := call(m, "count")
		if err != nil {
			t.Fatal(err)
		}
		if out["calls"] != 1.0 {
			t.Fatalf("fresh instance served %v calls, want 1", out["calls"])
		}
	}
	// The spare instance made for the next call is there again once the module is idle, also
	// after a call that trapped; Close closes it.
	if _, err := call(m, "trap"); !IsKind(err, KindTrap) {
		t.Fatalf("trap: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(m.spare) != 1 || m.refilling.Load() {
		if time.Now().After(deadline) {
			t.Fatal("no spare instance after the calls")
		}
		time.Sleep(time.Millisecond)
	}
	if out, err := call(m, "count"); err != nil || out["calls"] != 1.0 {
		t.Fatalf("after a trap: %v %v", out, err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(m.spare) != 0 {
		t.Error("Close left the spare instance open")
	}
}

func TestCallerDeadlineAndBusyPool(t *testing.T) {
	m := load(t, newRuntime(t), ModuleConfig{PoolSize: 1, Timeout: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var out anyResponse
	err := validate(ctx, m, 1, settings("loop"), &out)
	if !IsKind(err, KindTimeout) {
		t.Fatalf("loop under a 100ms caller deadline: %v", err)
	}
	// Hold the only instance with a slow call; a caller with a short deadline gets KindBusy.
	// First wait for the timed-out instance's replacement, so that only the slow call takes it.
	waitFor(t, "the timed-out instance's replacement", func() bool { return m.pool.free() == 1 && m.pool.idleCount() == 1 })
	done := make(chan error)
	go func() { _, err := call(m, "slow"); done <- err }()
	waitFor(t, "the slow call to take the instance", func() bool { return m.pool.free() == 0 })
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel2()
	err = validate(ctx2, m, 1, nil, &out)
	if !IsKind(err, KindBusy) {
		t.Errorf("second caller: %v, want busy", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	m := load(t, newRuntime(t), ModuleConfig{PoolSize: 3, Timeout: 2 * time.Second})
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				mode := ""
				if (g+i)%7 == 0 {
					mode = "trap" // faults mixed in: their instances are replaced under load
				}
				_, err := call(m, mode)
				if mode == "" && err != nil {
					errs <- err
				}
				if mode == "trap" && !IsKind(err, KindTrap) {
					errs <- fmt.Errorf("trap: %v", err)
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCompilationCacheReused(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 2; i++ {
		r, err := NewRuntime(context.Background(), RuntimeConfig{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defineWAPCStandIn(t, r)
		began := time.Now()
		m, err := r.Load(context.Background(), faultsWasm, ModuleConfig{Name: "faults", PoolSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("load %d: %v", i, time.Since(began))
		m.Close(context.Background())
		r.Close(context.Background())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) == 0 {
		t.Fatal("nothing written to the compilation cache")
	}
}

func TestClosedModule(t *testing.T) {
	r := newRuntime(t)
	m, err := r.Load(context.Background(), faultsWasm, ModuleConfig{Name: "faults", PoolSize: runtime.NumCPU()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := call(m, ""); !IsKind(err, KindClosed) {
		t.Fatalf("call after close: %v", err)
	}
}

// TestGrants: a module sees no environment and no files unless they are granted.
func TestGrants(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "data.txt"), []byte("granted line\nmore\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Setenv("WASMKUBE_TEST_SECRET", "host-only")
	defer os.Unsetenv("WASMKUBE_TEST_SECRET")
	envCall := func(m *Module, name string) (any, error) {
		var out map[string]any
		err := validate(context.Background(), m, 1, json.RawMessage(`{"mode":"env","name":"`+name+`"}`), &out)
		return out["value"], err
	}
	fileCall := func(m *Module, path string) (any, error) {
		var out map[string]any
		err := validate(context.Background(), m, 1, json.RawMessage(`{"mode":"file","path":"`+path+`"}`), &out)
		return out["value"], err
	}
	r := newRuntime(t)
	none := load(t, r, ModuleConfig{Name: "ungranted"})
	if v, err := envCall(none, "WASMKUBE_TEST_SECRET"); err != nil || v != "" {
		t.Errorf("the host environment leaked: %v %v", v, err)
	}
	if _, err := fileCall(none, "/data/data.txt"); !IsKind(err, KindModuleError) {
		t.Errorf("a file without a grant: %v", err)
	}
	granted := load(t, r, ModuleConfig{Name: "granted", Grants: Grants{
		Env: map[string]string{"GREETING": "hi"}, ReadOnlyDirs: []DirMount{{HostPath: dir, GuestPath: "/data"}},
	}})
	if v, err := envCall(granted, "GREETING"); err != nil || v != "hi" {
		t.Errorf("granted env: %v %v", v, err)
	}
	if v, err := fileCall(granted, "/data/data.txt"); err != nil || v != "granted line" {
		t.Errorf("granted dir: %v %v", v, err)
	}
	_, err := r.Load(context.Background(), faultsWasm, ModuleConfig{Name: "bad-grant", Grants: Grants{ReadOnlyDirs: []DirMount{{HostPath: filepath.Join(dir, "nope"), GuestPath: "/data"}}}})
	if err == nil || !strings.Contains(err.Error(), "nope is not a directory to mount at /data") {
		t.Errorf("missing granted dir: %v", err)
	}
}

// A pooled module makes one instance at load and reuses it while calls come one at a time
// (the most recently used instance first); concurrent calls make more, up to PoolSize.
func TestPoolFillsLazily(t *testing.T) {
	m := load(t, newRuntime(t), ModuleConfig{PoolSize: 3, Timeout: 5 * time.Second})
	if n := m.pool.idleCount(); n != 1 {
		t.Fatalf("%d instances after load, want 1", n)
	}
	for want := 1.0; want <= 3; want++ {
		out, err := call(m, "count")
		if err != nil {
			t.Fatal(err)
		}
		if out["calls"] != want {
			t.Fatalf("sequential call %v was served by an instance that served %v calls", want, out["calls"])
		}
	}
	// While a call holds the only instance (sleeping until its caller gives up), a second call
	// makes a new one.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		var out anyResponse
		done <- validate(ctx, m, 1, settings("sleep"), &out)
	}()
	waitFor(t, "the sleeping call to take the instance", func() bool { return m.pool.idleCount() == 0 && m.pool.free() == 2 })
	if out, err := call(m, "count"); err != nil || out["calls"] != 1.0 {
		t.Fatalf("a call while the only instance is busy: %v %v, want a new instance's first call", out, err)
	}
	cancel()
	if err := <-done; !IsKind(err, KindTimeout) {
		t.Fatalf("the canceled call: %v", err)
	}
	// The canceled call's instance is closed; with another one idle, none is made for it.
	if n, free := m.pool.idleCount(), m.pool.free(); n != 1 || free != 3 {
		t.Errorf("%d instances idle, %d tokens free after the calls, want 1 and 3", n, free)
	}
}
