package wasm

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// errRuntimeClosed fails code that would start running after Runtime.Close began.
var errRuntimeClosed = errors.New("the module runtime is closed")

// activity counts the module code running in a runtime (calls and instantiations, which run
// start functions), so that closing the runtime waits for it: wazero closes every instance
// with the runtime, and an instance closed under its running code loses its memory (see
// mapMemory) and its WASI state.
type activity struct {
	mu      sync.Mutex
	running int
	closing bool
	idle    chan struct{} // closed when running drops to 0 after closing began
}

// enter counts one piece of code as running, or fails once closing began.
func (a *activity) enter() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return errRuntimeClosed
	}
	a.running++
	return nil
}

// exit ends what enter began.
func (a *activity) exit() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.running--
	if a.closing && a.running == 0 {
		close(a.idle)
	}
}

// close refuses new code and waits, within ctx, until no code runs.
func (a *activity) close(ctx context.Context) error {
	a.mu.Lock()
	if !a.closing {
		a.closing = true
		a.idle = make(chan struct{})
		if a.running == 0 {
			close(a.idle)
		}
	}
	idle := a.idle
	a.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		a.mu.Lock()
		n := a.running
		a.mu.Unlock()
		return fmt.Errorf("%d module calls or instantiations still running: %w", n, ctx.Err())
	}
}
