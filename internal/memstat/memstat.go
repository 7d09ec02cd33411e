// Package memstat measures the process's resident memory for the tests that bound it (the
// hostile modules, the load runs): a reading that does not allocate, one after the garbage
// collector returned what it could, and a sampler of the peak.
package memstat

import (
	"os"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// RSS is the process's resident set size from /proc/self/statm (0 where there is none). It
// allocates only the file handle, so that samplers add next to nothing to what they measure.
func RSS() int64 {
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return 0
	}
	defer f.Close()
	var buf [128]byte
	n, _ := f.Read(buf[:])
	// The second field is the resident pages.
	var pages int64
	field := 0
	for _, c := range buf[:n] {
		switch {
		case c == ' ':
			field++
		case field == 1 && c >= '0' && c <= '9':
			pages = pages*10 + int64(c-'0')
		}
		if field > 1 {
			break
		}
	}
	return pages * int64(os.Getpagesize())
}

// Settled is RSS after the garbage collector ran and returned what it could to the system.
func Settled() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return RSS()
}

// Watch samples RSS every 2 ms until stop is called; peak returns the highest sample so far
// (and the current reading, if higher).
func Watch() (peak func() int64, stop func()) {
	var highest atomic.Int64
	highest.Store(RSS())
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				highest.Store(max(highest.Load(), RSS()))
			}
		}
	}()
	peak = func() int64 { return max(highest.Load(), RSS()) }
	stop = func() { close(quit); <-done }
	return peak, stop
}
