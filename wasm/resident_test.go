package wasm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/wasmkube/wasmkube/examples"
	. "github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
)

// Resident WASI commands (ModuleConfig.Snapshot): every call must answer what a fresh instance
// answers, and faults must end the call as they did before, with the next call working.

// commandArgs are the arguments the resident instances of the test commands run with.
var commandArgs = []string{"command", "validate"}

// loadCommand loads a WASI command of testdata/snapshot as a Fresh module with snapshots.
func loadCommand(t *testing.T, file string, pool int) *Module {
	t.Helper()
	bin, err := os.ReadFile(filepath.Join("testdata", "snapshot", file+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRuntime(context.Background(), RuntimeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	m, err := r.Load(context.Background(), bin, ModuleConfig{Name: file, Exports: []string{"_start"}, Isolation: Fresh, PoolSize: pool,
		Timeout: 500 * time.Millisecond, MemoryLimit: 16 << 20, StartFunctions: []string{}, SpareArgs: commandArgs, Snapshot: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// runCommand makes one call of m with stdin and returns its stdout.
func runCommand(m *Module, stdin string) (string, error) {
	var out string
	err := m.Invoke(context.Background(), Invocation{Export: "_start", Name: "validate", Args: commandArgs, Stdin: []byte(stdin)},
		func(r Result) error { out = string(r.Stdout); return nil })
	return out, err
}

// waitResident waits until m has an idle resident instance.
func waitResident(t *testing.T, m *Module) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ResidentsIdle(m) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no resident instance became ready")
		}
	}
}

// TestResidentCallsStartFresh: calls with different inputs each see only their own input and
// none of the state the calls before them left (a global and memory counter stay at 1).
func TestResidentCallsStartFresh(t *testing.T) {
	m := loadCommand(t, "counter", 1)
	waitResident(t, m)
	for i := range 30 {
		in := fmt.Sprintf("request %d", i)
		out, err := runCommand(m, in)
		if err != nil || out != "11"+in {
			t.Fatalf("call %d: %q %v, want %q", i, out, err, "11"+in)
		}
	}
	if n := ResidentCalls(m); n < 15 {
		t.Errorf("resident instances served %d of 30 calls", n)
	}
}

// TestResidentFaults: a call that loops is stopped at its deadline, a trap and an exit code end
// their calls as before, a call that grows the memory is answered; each time the next call
// starts fresh and residents keep serving.
func TestResidentFaults(t *testing.T) {
	m := loadCommand(t, "counter", 1)
	cases := []struct {
		in   string
		kind ErrorKind
		code uint32
	}{{"Loop", KindTimeout, 0}, {"Trap", KindTrap, 0}, {"X exit", KindExit, 3}, {"Grow", "", 0}}
	for _, c := range cases {
		waitResident(t, m)
		before := ResidentCalls(m)
		began := time.Now()
		out, err := runCommand(m, c.in)
		var ce *CallError
		switch {
		case c.kind == "" && (err != nil || out != "11"+c.in):
			t.Errorf("%s: %q %v", c.in, out, err)
		case c.kind != "" && (!errors.As(err, &ce) || ce.Kind != c.kind || ce.ExitCode != c.code):
			t.Errorf("%s: %v, want %s (exit code %d)", c.in, err, c.kind, c.code)
		case time.Since(began) > time.Second:
			t.Errorf("%s: took %s (timeout 500ms)", c.in, time.Since(began))
		case ResidentCalls(m) != before+1:
			t.Errorf("%s: not served by a resident instance", c.in)
		}
		waitResident(t, m)
		if out, err := runCommand(m, "after "+c.in); err != nil || out != "11after "+c.in {
			t.Errorf("after %s: %q %v", c.in, out, err)
		}
	}
}

// TestResidentReturnFromStart: a command that returns from _start after its answer (as a Rust
// main does) cannot be resumed: the call succeeds, and the calls after it take fresh instances.
func TestResidentReturnFromStart(t *testing.T) {
	m := loadCommand(t, "counter", 1)
	waitResident(t, m)
	if out, err := runCommand(m, "Return"); err != nil || out != "11Return" || ResidentCalls(m) != 1 {
		t.Fatalf("return: %q %v (resident calls %d)", out, err, ResidentCalls(m))
	}
	for i := range 3 {
		in := fmt.Sprint("after ", i)
		if out, err := runCommand(m, in); err != nil || out != "11"+in {
			t.Errorf("%s: %q %v", in, out, err)
		}
	}
	if n := ResidentCalls(m); n != 1 {
		t.Errorf("resident instances served %d calls after one returned from _start", n)
	}
}

// TestResidentConcurrentCalls: PoolSize residents serve concurrent calls, each with its own
// input and output.
func TestResidentConcurrentCalls(t *testing.T) {
	m := loadCommand(t, "counter", 2)
	waitResident(t, m)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				in := fmt.Sprintf("caller %d call %d", g, i)
				if out, err := runCommand(m, in); err != nil || out != "11"+in {
					t.Errorf("%q: %q %v", in, out, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if ResidentCalls(m) == 0 {
		t.Error("no call was served by a resident instance")
	}
}

// TestResidentNotApplicable: a command that does not retry an interrupted read, and one that
// never reads stdin, get a fresh instance for every call and answer correctly.
func TestResidentNotApplicable(t *testing.T) {
	for file, want := range map[string]string{"no-retry": "ok", "no-stdin": "hi"} {
		m := loadCommand(t, file, 1)
		time.Sleep(50 * time.Millisecond) // the first resident's start-up finds out
		for i := range 5 {
			in := fmt.Sprint(i)
			out, err := runCommand(m, in)
			if file == "no-retry" {
				want = "ok" + in
			}
			if err != nil || out != want {
				t.Errorf("%s call %d: %q %v, want %q", file, i, out, err, want)
			}
		}
		if n := ResidentCalls(m); n != 0 {
			t.Errorf("%s: %d calls served by resident instances", file, n)
		}
	}
}

// TestResidentGoPolicy: a Kubewarden policy built with standard Go (examples/unique-ingress-host)
// answers alternating requests, one decided at once and one that makes a host call (whose answer
// it reads from stdin after the request), each correctly, from resident instances.
func TestResidentGoPolicy(t *testing.T) {
	bin, _ := examples.Module("unique-ingress-host")
	r, err := NewRuntime(context.Background(), RuntimeConfig{CacheDir: filepath.Join(os.TempDir(), "wasmkube-test-cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	grants := kubewarden.PolicyGrants{ContextAwareResources: []kubewarden.ContextAwareResource{{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"}}}
	p, err := kubewarden.Load(context.Background(), r, bin, kubewarden.PolicyConfig{Module: ModuleConfig{Name: "uih", PoolSize: 1}, Grants: grants})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	waitResident(t, p.Module())
	for i := range 20 {
		object := fmt.Sprintf(`{"kind":"Ingress","metadata":{"name":"i%d"},"spec":{}}`, i)
		if i%2 == 1 {
			object = fmt.Sprintf(`{"kind":"Ingress","metadata":{"name":"i%d"},"spec":{"rules":[{"host":"h%d.example.com"}]}}`, i, i)
		}
		req := &admissionv1.AdmissionRequest{UID: "u", Operation: admissionv1.Create, Name: fmt.Sprintf("i%d", i), Namespace: "default",
			Object: runtime.RawExtension{Raw: []byte(object)}}
		res, err := p.Admit(context.Background(), &admissionv1.AdmissionReview{Request: req}, false)
		switch {
		case err != nil:
			t.Fatalf("call %d: %v", i, err)
		case i%2 == 0 && !res.Allowed:
			t.Errorf("call %d (no hosts): denied: %+v", i, res.Result)
		case i%2 == 1 && (res.Allowed || !strings.Contains(res.Result.Message, "cannot list Ingresses")):
			t.Errorf("call %d (a host): %+v", i, res)
		}
	}
	if n := ResidentCalls(p.Module()); n < 10 {
		t.Errorf("resident instances served %d of 20 calls", n)
	}
}

// TestSnapshotModulesAreCurrent checks that every committed .wasm of testdata/snapshot is what
// wat2wasm makes of the .wat beside it (rebuild: the command in each .wat).
func TestSnapshotModulesAreCurrent(t *testing.T) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Skip("wat2wasm (Debian package wabt) is not installed")
	}
	wats, _ := filepath.Glob("testdata/snapshot/*.wat")
	for _, wat := range wats {
		out := filepath.Join(t.TempDir(), "out.wasm")
		if b, err := exec.Command("wat2wasm", wat, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", wat, err, b)
		}
		want, _ := os.ReadFile(out)
		have, _ := os.ReadFile(strings.TrimSuffix(wat, ".wat") + ".wasm")
		if !bytes.Equal(want, have) {
			t.Errorf("%s is not what wat2wasm makes of %s", strings.TrimSuffix(wat, ".wat")+".wasm", wat)
		}
	}
}

// TestResidentOtherExport: a call of another export on a module with snapshots fails as a
// missing export and leaves the resident serving.
func TestResidentOtherExport(t *testing.T) {
	m := loadCommand(t, "counter", 1)
	waitResident(t, m)
	err := m.Invoke(context.Background(), Invocation{Export: "validate", Args: commandArgs}, nil)
	if !IsKind(err, KindMissingExport) {
		t.Errorf("other export: %v", err)
	}
	waitResident(t, m)
	if out, err := runCommand(m, "next"); err != nil || out != "11next" || ResidentCalls(m) != 2 {
		t.Errorf("next: %q %v (resident calls %d)", out, err, ResidentCalls(m))
	}
}

// TestResidentRetires: a resident serves at most MaxResidentCalls calls (wazero's snapshot stack
// grows with each), then a new one takes its place; every call still answers as a fresh start.
func TestResidentRetires(t *testing.T) {
	m := loadCommand(t, "counter", 1)
	waitResident(t, m)
	for i := range 2*MaxResidentCalls + 5 {
		in := fmt.Sprintf("request %d", i)
		if out, err := runCommand(m, in); err != nil || out != "11"+in {
			t.Fatalf("call %d: %q %v, want %q", i, out, err, "11"+in)
		}
	}
	if got := ResidentsRetired(m); got < 2 {
		t.Fatalf("%d residents retired after %d calls, want 2 or more", got, 2*MaxResidentCalls+5)
	}
	if ResidentCalls(m) < MaxResidentCalls {
		t.Fatalf("residents served %d calls: the calls did not use them", ResidentCalls(m))
	}
}

// TestResidentClosedStdout: a call that closes its stdout (state a snapshot does not hold)
// fails alone; the resident retires and the calls after it, other users' requests, work.
func TestResidentClosedStdout(t *testing.T) {
	m := loadCommand(t, "closeout", 1)
	waitResident(t, m)
	want := `{"valid":true,"accepted":true}`
	if out, err := runCommand(m, "a"); err != nil || out != want {
		t.Fatalf("first call: %q %v", out, err)
	}
	if out, _ := runCommand(m, "b~"); out != "" {
		t.Fatalf("the call that closed stdout answered %q", out)
	}
	for i := range 4 {
		if out, err := runCommand(m, fmt.Sprint("c", i)); err != nil || out != want {
			t.Fatalf("call %d after the one that closed stdout: %q %v, want %q", i, out, err, want)
		}
	}
	if ResidentsRetired(m) < 1 {
		t.Fatal("the resident that closed its stdout did not retire")
	}
}
