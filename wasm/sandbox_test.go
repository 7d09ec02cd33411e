package wasm

import (
	"context"
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
		done <- m.CallEnvelope(ctx, ExportValidate, 1, settings("sleep"), &out)
	}()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var out anyResponse
	if err := m.CallEnvelope(ctx, ExportValidate, 1, nil, &out); !IsKind(err, KindBusy) {
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
	_, err = m.CallCommand(context.Background(), []string{"cmd", "arg"}, nil, nil)
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
		_ = m.Call(context.Background(), ExportValidate, []byte(`{"request":1}`), func([]byte) error { panic("decoder bug") })
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
	time.Sleep(100 * time.Millisecond)
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
