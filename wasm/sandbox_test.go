package wasm

import (
	"context"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// A fresh module makes at most PoolSize instances at a time: a call that finds them all in use
// waits, until its deadline, like a call of a pooled module.
func TestFreshCallsAreBoundedByPoolSize(t *testing.T) {
	m := load(t, newRuntime(t), ModuleConfig{Isolation: Fresh, PoolSize: 1, Timeout: 5 * time.Second})
	done := make(chan error)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		var out anyResponse
		done <- validate(ctx, m, 1, settings("sleep"), &out)
	}()
	waitFor(t, "the sleeping call to take the only slot", func() bool { return len(m.slots) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var out anyResponse
	if err := validate(ctx, m, 1, nil, &out); !IsKind(err, KindBusy) {
		t.Errorf("a second call while the only instance sleeps: %v, want busy", err)
	}
	if err := <-done; !IsKind(err, KindTimeout) {
		t.Fatalf("the sleeping call: %v", err)
	}
	if _, err := call(m, ""); err != nil {
		t.Fatalf("after both: %v", err)
	}
}

// An instance made for a call is made under the call's deadline, not a start budget of its own.
func TestFreshInstantiationUsesTheCallDeadline(t *testing.T) {
	bin, err := os.ReadFile("testdata/hostile/argv-start-loop.wasm")
	if err != nil {
		t.Fatal(err)
	}
	m, err := newRuntime(t).Load(context.Background(), bin, ModuleConfig{Name: "argv-start-loop",
		Exports: []string{"_start"}, Isolation: Fresh, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	began := time.Now()
	err = m.Invoke(context.Background(), Invocation{Export: "_start", Args: []string{"cmd", "arg"}}, nil)
	if !IsKind(err, KindTimeout) || !strings.Contains(err.Error(), "instantiate") {
		t.Fatalf("got %v, want a timeout while instantiating", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("the call ended after %s; its timeout is 300ms", took)
	}
}

// A panic in the caller's code while it holds an instance (here in decode) does not lose the
// instance's pool slot.
func TestPanicWhileHoldingAnInstance(t *testing.T) {
	m := load(t, newRuntime(t), ModuleConfig{PoolSize: 1, Timeout: time.Second})
	func() {
		defer func() { _ = recover() }()
		_ = m.Call(context.Background(), exportValidate, []byte(`{"request":1}`), func([]byte) error { panic("decoder bug") })
	}()
	if _, err := call(m, ""); err != nil {
		t.Fatalf("after a panic: %v", err)
	}
}

// Close waits for running calls only as long as its context allows, and an instance still in
// use when Close gives up is closed when its call ends.
func TestCloseIsBounded(t *testing.T) {
	m := load(t, newRuntime(t), ModuleConfig{PoolSize: 1, Timeout: 2 * time.Second})
	done := make(chan error)
	go func() { _, err := call(m, "sleep"); done <- err }()
	for m.pool.free() != 0 { // until the sleeping call holds the instance
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := m.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "still in use") {
		t.Errorf("Close during a call: %v, want an error saying an instance is in use", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("Close took %s with a 200ms context", took)
	}
	if err := <-done; !IsKind(err, KindTimeout) {
		t.Fatalf("the sleeping call: %v", err)
	}
}

// Calls that fail (and have their instances replaced in the background) while the module is
// closed: run under the race detector, this catches a WaitGroup Add racing its Wait.
func TestCloseWhileInstancesAreReplaced(t *testing.T) {
	for i := 0; i < 5; i++ {
		m := load(t, newRuntime(t), ModuleConfig{PoolSize: 4, Timeout: time.Second})
		var wg sync.WaitGroup
		for j := 0; j < 4; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = call(m, "trap")
			}()
		}
		time.Sleep(time.Duration(i) * time.Millisecond)
		if err := m.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
}

// Closing the runtime under running code (a call, and an instantiation whose start function
// loops over memory) waits for both to end at their deadlines: closing an instance under its
// code would unmap the memory it uses and kill the process. New calls fail at once; a close
// whose context ends first says so and leaves the runtime open.
func TestRuntimeCloseUnderRunningCode(t *testing.T) {
	r, err := NewRuntime(context.Background(), RuntimeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defineWAPCStandIn(t, r)
	m := load(t, r, ModuleConfig{PoolSize: 2, Timeout: 500 * time.Millisecond})
	startLoop, err := os.ReadFile("testdata/hostile/start-loop.wasm")
	if err != nil {
		t.Fatal(err)
	}
	called, loaded := make(chan error, 1), make(chan error, 1)
	go func() {
		var out anyResponse
		called <- validate(context.Background(), m, 1, settings("sleep"), &out)
	}()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := r.Load(ctx, startLoop, ModuleConfig{Name: "start-loop", Exports: []string{exportValidate}, Timeout: 500 * time.Millisecond})
		loaded <- err
	}()
	waitFor(t, "the call and the start function to run", func() bool {
		r.active.mu.Lock()
		defer r.active.mu.Unlock()
		return r.active.running == 2
	})
	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := r.Close(short); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Errorf("close within 10ms: %v, want an error saying code still runs", err)
	}
	if _, err := call(m, ""); !IsKind(err, KindClosed) {
		t.Errorf("a call after Close began: %v, want closed", err)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-called; !IsKind(err, KindTimeout) {
		t.Errorf("the sleeping call: %v, want a timeout", err)
	}
	if err := <-loaded; !IsKind(err, KindTimeout) {
		t.Errorf("the looping start function: %v, want a timeout", err)
	}
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
	}
}

// poolObserver keeps the last pool report of each module.
type poolObserver struct {
	nopObserver
	mu   sync.Mutex
	last map[string][2]int
}

func (o *poolObserver) ObservePool(module string, size, idle int) {
	// A report takes a while (as a metrics registry may): one that read the pool earlier
	// must still not land after one that read it later.
	time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last[module] = [2]int{size, idle}
}

// The pool metric settles on what the pool holds: after many concurrent calls (some of which
// replace their instance), the last report says every instance is idle; after Close, that the
// pool is gone.
func TestPoolReportsSettle(t *testing.T) {
	obs := &poolObserver{last: map[string][2]int{}}
	r := testRuntime(t, RuntimeConfig{Observer: obs})
	m := load(t, r, ModuleConfig{PoolSize: 3, Timeout: 5 * time.Second})
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mode := ""
				if g == 0 && round%4 == 0 {
					mode = "trap"
				}
				_, _ = call(m, mode)
			}()
		}
		wg.Wait()
		// A replacement is reported when it is made; no report may be left behind.
		var last [2]int
		for deadline := time.Now().Add(2 * time.Second); last != [2]int{3, 3} && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			obs.mu.Lock()
			last = obs.last["faults"]
			obs.mu.Unlock()
		}
		if last != [2]int{3, 3} || m.pool.free() != 3 {
			t.Fatalf("round %d: last report %v with %d instances idle, want [3 3]", round, last, m.pool.free())
		}
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if last := obs.last["faults"]; last != [2]int{0, 0} {
		t.Errorf("after Close: last report %v, want [0 0]", last)
	}
}
