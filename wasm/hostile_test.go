package wasm_test

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmkube/wasmkube/internal/memstat"
	. "github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
)

// The hostile modules (testdata/hostile/*.wat, assembled into the .wasm beside each) each try to
// escape one bound of the sandbox. Every call must end within its timeout plus hostileSlack,
// with the kind of error that names the bound, while the host's memory grows by less than
// 2 × memory limit × pool size; modules that cannot be bounded are refused at load.
const (
	hostileTimeout = 500 * time.Millisecond
	hostileMemory  = 16 << 20
	hostilePool    = 2
	hostileSlack   = 100 * time.Millisecond
)

type hostileCase struct {
	file string
	// cfg adjusts the module's configuration (exports, start functions, isolation).
	cfg func(*ModuleConfig)
	// call makes one call; nil: the original ABI's validate.
	call func(ctx context.Context, m *Module) error
	// kind is the error every call must end with; refused, the text of a load error instead.
	kind    ErrorKind
	refused string
}

// wapcGuest loads a module as a waPC guest without start functions.
func wapcGuest(c *ModuleConfig) { c.Exports, c.StartFunctions = []string{"__guest_call"}, []string{} }

// megabyte is what hugeAnswers answers.
var megabyte = bytes.Repeat([]byte("x"), 1<<20)

// hugeAnswers answers every host call with a megabyte.
func hugeAnswers(context.Context, string, string, string, []byte) ([]byte, error) {
	return megabyte, nil
}

func hostileCases(logged *atomic.Int64) []hostileCase {
	wapc := func(ctx context.Context, m *Module) error {
		_, err := kubewarden.CallWAPC(ctx, m, "validate", nil, hugeAnswers, func(string) { logged.Add(1) })
		return err
	}
	return []hostileCase{
		{file: "recursion", kind: KindTimeout},
		{file: "indirect-recursion", kind: KindTimeout},
		{file: "deep-recursion", kind: KindStack},
		{file: "table-growth", kind: KindTimeout},
		{file: "table-bulk", kind: KindTimeout},
		{file: "memory-growth", kind: KindTimeout},
		{file: "memory-bulk", kind: KindTimeout},
		{file: "random-flood", kind: KindTimeout},
		{file: "stderr-flood", kind: KindTimeout},
		{file: "host-call-flood", cfg: wapcGuest, call: wapc, kind: KindLimit},
		{file: "log-flood", cfg: wapcGuest, call: wapc, kind: KindTimeout},
		{file: "stdin-flood", kind: KindLimit,
			cfg: func(c *ModuleConfig) {
				c.Exports, c.StartFunctions, c.Isolation = []string{"_start"}, []string{}, Fresh
			},
			call: func(ctx context.Context, m *Module) error {
				_, err := kubewarden.CallCommand(ctx, m, []string{"policy.wasm", "validate"}, nil, hugeAnswers)
				return err
			}},
		{file: "start-loop", refused: "timeout"},
		{file: "initialize-loop", refused: "timeout"},
		{file: "huge-table", refused: "the module's tables need 100000000 elements at start, more than the limit of 262144"},
		{file: "invalid-global", refused: "invalid module: global index 0 out of range (the module declares 0 globals)"},
		{file: "tail-call", refused: "unsupported WebAssembly feature: tail calls"},
	}
}

func TestHostileModules(t *testing.T) {
	var logged atomic.Int64
	logs := &lockedBuffer{}
	r, err := NewRuntime(context.Background(), RuntimeConfig{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	if err := kubewarden.DefineHosts(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	for _, c := range hostileCases(&logged) {
		t.Run(c.file, func(t *testing.T) {
			bin, err := os.ReadFile(filepath.Join("testdata", "hostile", c.file+".wasm"))
			if err != nil {
				t.Fatal(err)
			}
			cfg := ModuleConfig{Name: c.file, Exports: []string{"validate"}, Timeout: hostileTimeout,
				MemoryLimit: hostileMemory, PoolSize: hostilePool}
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			before := memstat.Settled()
			peak := watchRSS(t)
			if c.refused != "" {
				ctx, cancel := context.WithTimeout(context.Background(), hostileTimeout)
				defer cancel()
				began := time.Now()
				_, err := r.Load(ctx, bin, cfg)
				if err == nil || !strings.Contains(err.Error(), c.refused) || !strings.Contains(err.Error(), c.file) {
					t.Fatalf("load: %v; want a refusal naming the module and saying %q", err, c.refused)
				}
				if took := time.Since(began); took > hostileTimeout+hostileSlack {
					t.Errorf("refused after %s, more than %s", took, hostileTimeout+hostileSlack)
				}
				t.Logf("refused at load in %s: %v", time.Since(began).Round(time.Millisecond), err)
				return
			}
			m, err := r.Load(context.Background(), bin, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			call := c.call
			if call == nil {
				call = func(ctx context.Context, m *Module) error { return m.Call(ctx, "validate", nil, nil) }
			}
			// Every instance runs the hostile call at once, twice in a row.
			var wg sync.WaitGroup
			var mu sync.Mutex
			var worst time.Duration
			for i := 0; i < hostilePool; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := 0; j < 2; j++ {
						began := time.Now()
						err := call(context.Background(), m)
						took := time.Since(began)
						mu.Lock()
						worst = max(worst, took)
						mu.Unlock()
						if !IsKind(err, c.kind) {
							t.Errorf("call %d: %v; want kind %s", j, err, c.kind)
						}
					}
				}()
			}
			wg.Wait()
			grew := peak() - before
			bound := int64(2 * hostileMemory * hostilePool)
			t.Logf("slowest call %s (timeout %s), RSS grew %d MiB at most (bound %d MiB)",
				worst.Round(time.Millisecond), hostileTimeout, grew>>20, bound>>20)
			if worst > hostileTimeout+hostileSlack {
				t.Errorf("a call took %s, more than the timeout %s + %s", worst, hostileTimeout, hostileSlack)
			}
			if grew >= bound {
				t.Errorf("RSS grew by %d MiB, not less than 2 × %d MiB × %d", grew>>20, hostileMemory>>20, hostilePool)
			}
		})
	}
	// The log flood got through its burst and rate, no more.
	if n := logged.Load(); n == 0 || n > LogBurst+LogRate*int64(4*hostileTimeout/time.Second+1) {
		t.Errorf("%d console lines logged during the log flood", n)
	}
	if !strings.Contains(logs.String(), "module log lines were dropped") {
		t.Errorf("dropped log lines were not reported: %.300s", logs.String())
	}
}

// TestHostileModulesAreCurrent checks that every committed .wasm is what wat2wasm makes of the
// .wat beside it (rebuild: make hostile).
func TestHostileModulesAreCurrent(t *testing.T) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Skip("wat2wasm (Debian package wabt) is not installed")
	}
	wats, _ := filepath.Glob("testdata/hostile/*.wat")
	for _, wat := range wats {
		flags, err := watFlags(wat)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "out.wasm")
		cmd := exec.Command("wat2wasm", append(flags, wat, "-o", out)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", wat, err, b)
		}
		want, _ := os.ReadFile(out)
		have, _ := os.ReadFile(strings.TrimSuffix(wat, ".wat") + ".wasm")
		if !bytes.Equal(want, have) {
			t.Errorf("%s is not what wat2wasm makes of %s: run make hostile", strings.TrimSuffix(wat, ".wat")+".wasm", wat)
		}
	}
}

// watFlags reads the wat2wasm flags a .wat file names in a ";; wat2wasm-flags:" line.
func watFlags(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), ";; wat2wasm-flags:"); ok {
			return strings.Fields(rest), nil
		}
	}
	return nil, s.Err()
}

// watchRSS samples the process's resident memory until the test ends; peak returns the highest.
func watchRSS(t *testing.T) (peak func() int64) {
	peak, stop := memstat.Watch()
	t.Cleanup(stop)
	return peak
}

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
