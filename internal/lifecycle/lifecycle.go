// Package lifecycle keeps the stop bookkeeping of something made of parts started one after
// another (a wasmkube cluster): the parts' stop functions, run once and newest first, and the
// reason it stopped, written in one place only.
package lifecycle

import (
	"context"
	"errors"
	"sync"
)

// Stopper runs registered stop functions once, newest first, and records why it stopped.
// Its zero value is not usable; call New.
type Stopper struct {
	mu       sync.Mutex
	fns      []func() error
	stopping chan struct{}
	once     sync.Once
	done     chan struct{}
	err      error // written once, by the goroutine Stop starts, before done is closed
}

// New returns a Stopper that runs nothing yet.
func New() *Stopper {
	return &Stopper{stopping: make(chan struct{}), done: make(chan struct{})}
}

// OnStop registers fn to run on Stop or RunStops, in reverse order of registration.
func (s *Stopper) OnStop(fn func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fns = append(s.fns, fn)
}

// RunStops runs the registered stop functions newest first, forgets them, and returns their
// errors joined (context.Canceled left out). A start that fails half-way rolls back with it.
func (s *Stopper) RunStops() error {
	s.mu.Lock()
	fns := s.fns
	s.fns = nil
	s.mu.Unlock()
	var errs []error
	for i := len(fns) - 1; i >= 0; i-- {
		if err := fns[i](); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stop begins stopping, once: Stopping is closed, the stop functions run in a goroutine, then
// Done is closed. The first call's cause, when not nil, is what Err reports (a part failed);
// otherwise Err reports the stop functions' errors. Later calls change nothing.
func (s *Stopper) Stop(cause error) {
	s.once.Do(func() {
		close(s.stopping)
		go func() {
			err := s.RunStops()
			if cause != nil {
				err = cause
			}
			s.err = err
			close(s.done)
		}()
	})
}

// Stopping is closed when Stop is first called.
func (s *Stopper) Stopping() <-chan struct{} { return s.stopping }

// Done is closed when the stop functions have run.
func (s *Stopper) Done() <-chan struct{} { return s.done }

// Err is why it stopped; nil until Done is closed.
func (s *Stopper) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}
