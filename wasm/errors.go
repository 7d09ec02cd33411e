package wasm

import (
	"errors"
	"fmt"
)

// ErrorKind classifies why a module call failed.
type ErrorKind string

// The kinds of call failure.
const (
	// KindTimeout: the call ran past its timeout (or the caller's deadline) and was stopped.
	KindTimeout ErrorKind = "timeout"
	// KindTrap: the module trapped (unreachable, out-of-bounds access, stack overflow, a host
	// function failure).
	KindTrap ErrorKind = "trap"
	// KindExit: the module exited (proc_exit) with a non-zero code.
	KindExit ErrorKind = "exit"
	// KindMemory: the module ran out of its memory limit.
	KindMemory ErrorKind = "memory"
	// KindStack: the module's estimated call stack passed its limit (deep or endless recursion).
	KindStack ErrorKind = "stack"
	// KindLimit: the module passed a data limit of the host: what it exchanged through host
	// calls in one call.
	KindLimit ErrorKind = "limit"
	// KindMissingExport: the module has no such exported function.
	KindMissingExport ErrorKind = "missing-export"
	// KindOutputTooLarge: the module wrote more than the output limit.
	KindOutputTooLarge ErrorKind = "output-too-large"
	// KindInvalidJSON: the output is not exactly one JSON document of the envelope's shape.
	KindInvalidJSON ErrorKind = "invalid-json"
	// KindMissingResponse: the envelope has neither response nor error.
	KindMissingResponse ErrorKind = "missing-response"
	// KindModuleError: the module answered with a non-empty error.
	KindModuleError ErrorKind = "module-error"
	// KindInvalidResponse: the response breaks the hook's contract (wrong kind, uid mismatch…).
	KindInvalidResponse ErrorKind = "invalid-response"
	// KindBusy: no instance became free before the caller's deadline.
	KindBusy ErrorKind = "busy"
	// KindClosed: the module was closed.
	KindClosed ErrorKind = "closed"
)

// ErrOutOfMemory is what a host function panics with (wrapped) when the module tells it that it
// ran out of memory, an ABI's allocator failing (OPA's opa_abort("opa_malloc: failed")): the call
// fails as KindMemory.
var ErrOutOfMemory = errors.New("out of memory")

// CallError is the error of a failed module call. It names the module and the export.
type CallError struct {
	Module string
	Export string
	Kind   ErrorKind
	// ExitCode is set for KindExit.
	ExitCode uint32
	// Stderr is the tail of what the module wrote to stderr during the call.
	Stderr string
	// Err is the underlying error, if any.
	Err error
}

func (e *CallError) Error() string {
	msg := fmt.Sprintf("module %q export %q: %s", e.Module, e.Export, e.describe())
	if e.Stderr != "" {
		msg += "; stderr: " + e.Stderr
	}
	return msg
}

func (e *CallError) describe() string {
	switch e.Kind {
	case KindExit:
		return fmt.Sprintf("exited with code %d", e.ExitCode)
	case KindMissingExport:
		return "no such exported function"
	case KindModuleError:
		return "module returned error: " + errString(e.Err)
	}
	if e.Err != nil {
		return string(e.Kind) + ": " + e.Err.Error()
	}
	return string(e.Kind)
}

func (e *CallError) Unwrap() error { return e.Err }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// IsKind reports whether err is a *CallError of the kind k.
func IsKind(err error, k ErrorKind) bool {
	var ce *CallError
	return errors.As(err, &ce) && ce.Kind == k
}
