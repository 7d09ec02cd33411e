package wasm

import (
	"context"
	"errors"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// Session is an instance held for one call made of several calls of its exports, with its
// memory read and written between them: an ABI such as OPA's parses its input into the guest's
// heap, evaluates, and reads the result where the guest put it.
//
// # Notes
//
//   - Every call of a session is bounded by the one deadline of the session (the module's
//     timeout and the caller's context); metering, the memory cap and host-call limits apply to
//     each call as to Invoke's.
//   - A trap, timeout or exit in any call ends the session: its instance is not used again.
//   - A Session is valid only inside the function Module.Session hands it to.
type Session struct {
	inst     *instance
	ctx      context.Context
	deadline time.Time
	name     string
	state    any
}

// Session holds an instance for use, which calls its exports through the Session; name names the
// whole in errors and metrics; state is what the ABI's host functions see (Call.State) during
// every call.
//
// # Notes
//
//   - An error use returns fails the session as Invoke's handle does: a *CallError keeps its
//     kind (KindInvalidJSON, KindInvalidResponse and KindMissingResponse replace the instance),
//     any other error is KindInvalidResponse and replaces the instance.
func (m *Module) Session(ctx context.Context, name string, state any, use func(*Session) error) error {
	return m.with(ctx, name, nil, func(inst *instance, deadline time.Time) error {
		s := &Session{inst: inst, ctx: ctx, deadline: deadline, name: name, state: state}
		err := use(s)
		if err == nil {
			return nil
		}
		var ce *CallError
		if !errors.As(err, &ce) {
			inst.broken = true
			return inst.fail(name, KindInvalidResponse, err)
		}
		if ce.Module == "" {
			ce.Module = m.cfg.Name
		}
		if ce.Export == "" {
			ce.Export = name
		}
		switch ce.Kind {
		case KindInvalidJSON, KindInvalidResponse, KindMissingResponse, KindLimit, KindMemory:
			inst.broken = true
		}
		return ce
	})
}

// Call calls export with params under the session's deadline.
func (s *Session) Call(export string, params ...uint64) ([]uint64, error) {
	if s.inst.broken {
		return nil, s.inst.fail(s.name, KindTrap, errors.New("the instance broke in an earlier call of this session"))
	}
	return s.inst.run(s.ctx, Invocation{Export: export, Name: s.name, Params: params, State: s.state}, s.deadline)
}

// Memory is the instance's linear memory.
func (s *Session) Memory() api.Memory { return s.inst.mod.Memory() }

// Global is the value of the global the module exports as name; ok is false when it exports none.
func (s *Session) Global(name string) (v uint64, ok bool) {
	g := s.inst.mod.ExportedGlobal(name)
	if g == nil {
		return 0, false
	}
	return g.Get(), true
}

// Local is what the ABI kept with this instance in an earlier session (SetLocal), nil for an
// instance it has not used before: a pooled instance's state such as where its heap starts.
func (s *Session) Local() any { return s.inst.local }

// SetLocal keeps v with the instance for the sessions that use it next.
func (s *Session) SetLocal(v any) { s.inst.local = v }

// Fail is a CallError of kind for this session, for an ABI that finds the guest's answer wrong.
func (s *Session) Fail(kind ErrorKind, err error) *CallError {
	return s.inst.fail(s.name, kind, err).(*CallError)
}

// Exported says the module exports a function named name.
func (s *Session) Exported(name string) bool { return s.inst.fn(name) != nil }

// MaxOutputBytes is the most the module may answer (ModuleConfig.MaxOutputBytes).
func (s *Session) MaxOutputBytes() int { return s.inst.m.cfg.MaxOutputBytes }
