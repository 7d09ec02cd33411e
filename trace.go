package wasmkube

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// Trace records when each phase of a start-up ended, relative to the trace's creation: what
// `wasmkube up --trace FILE` writes. Marks may come from several goroutines (steps that run
// concurrently, the readiness poll); a nil *Trace records nothing.
type Trace struct {
	mu     sync.Mutex
	began  time.Time
	events []TraceEvent
}

// TraceEvent is one phase's end.
type TraceEvent struct {
	// At is the time since the trace began.
	At time.Duration
	// Phase names the phase, e.g. "etcd ready" or "poststarthook/rbac/bootstrap-roles".
	Phase string
	// Detail says more, when there is more to say.
	Detail string
}

// NewTrace starts a trace now.
func NewTrace() *Trace { return &Trace{began: time.Now()} }

// Mark records that phase ended now.
func (t *Trace) Mark(phase, detail string) {
	if t == nil {
		return
	}
	at := time.Since(t.began)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = append(t.events, TraceEvent{At: at, Phase: phase, Detail: detail})
}

// Events returns the events recorded so far, in the order they happened.
func (t *Trace) Events() []TraceEvent {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := slices.Clone(t.events)
	slices.SortStableFunc(out, func(a, b TraceEvent) int { return int(a.At - b.At) })
	return out
}

// WriteTo writes the events as text, one line each: milliseconds since the start, the time
// since the previous event, the phase and its detail, tab-separated after a header line.
func (t *Trace) WriteTo(w io.Writer) (int64, error) {
	var n int64
	write := func(format string, args ...any) error {
		m, err := fmt.Fprintf(w, format, args...)
		n += int64(m)
		return err
	}
	if err := write("# at_ms\tdelta_ms\tphase\tdetail\n"); err != nil {
		return n, err
	}
	var last time.Duration
	for _, e := range t.Events() {
		if err := write("%.1f\t%.1f\t%s\t%s\n", ms(e.At), ms(e.At-last), e.Phase, e.Detail); err != nil {
			return n, err
		}
		last = e.At
	}
	return n, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
