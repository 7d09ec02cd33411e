package wasm_test

import (
	"context"
	"errors"
	"testing"

	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
)

// TestSession: what an ABI keeps with an instance (Local) lasts from one session to the next on
// that instance; a session whose ABI finds the answer wrong replaces the instance, so the next
// session starts clean; the session reports the module's exports and memory.
func TestSession(t *testing.T) {
	bin, _ := examples.Module("magic-validate")
	m := wasmtest.Load(t, wasmtest.Runtime(t), bin, wasm.ModuleConfig{Name: "magic-validate", PoolSize: 1})
	ctx := context.Background()
	session := func(use func(*wasm.Session) error) error { return m.Session(ctx, "sess", nil, use) }
	err := session(func(s *wasm.Session) error {
		if s.Local() != nil || !s.Exported("validate") || s.Exported("no-such-export") || s.Memory() == nil || s.MaxOutputBytes() != wasm.DefaultMaxOutputBytes {
			t.Errorf("a new instance: local %v, exports validate %v, memory %v", s.Local(), s.Exported("validate"), s.Memory())
		}
		if _, ok := s.Global("no-such-global"); ok {
			t.Error("a global the module does not export")
		}
		s.SetLocal("kept")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = session(func(s *wasm.Session) error {
		if s.Local() != "kept" {
			t.Errorf("the same instance's local: %v", s.Local())
		}
		return errors.New("the answer is wrong")
	})
	ce, ok := errors.AsType[*wasm.CallError](err)
	if !ok || ce.Kind != wasm.KindInvalidResponse || ce.Module != "magic-validate" || ce.Export != "sess" {
		t.Errorf("the failed session: %#v", err)
	}
	if err := session(func(s *wasm.Session) error {
		if s.Local() != nil {
			t.Errorf("after a failed session the instance was kept: local %v", s.Local())
		}
		_, err := s.Call("no-such-export")
		return err
	}); err == nil {
		t.Error("calling an export the module does not have succeeded")
	}
}
