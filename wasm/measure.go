package wasm

import (
	"sort"
	"sync"
	"time"
)

// Measurement summarizes repeated calls.
type Measurement struct {
	Calls       int
	Elapsed     time.Duration
	P50, P99    time.Duration
	CallsPerSec float64
}

// Measure runs call n times from concurrency goroutines and reports latency percentiles and
// throughput. It stops at the first error.
func Measure(n, concurrency int, call func() error) (Measurement, error) {
	if concurrency < 1 {
		concurrency = 1
	}
	lat := make([]time.Duration, n)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     int
	)
	began := time.Now()
	for g := 0; g < concurrency; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := i >= n || firstErr != nil
				mu.Unlock()
				if stop {
					return
				}
				t := time.Now()
				err := call()
				lat[i] = time.Since(t)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	if firstErr != nil {
		return Measurement{}, firstErr
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return Measurement{
		Calls: n, Elapsed: elapsed, P50: lat[n/2], P99: lat[n*99/100],
		CallsPerSec: float64(n) / elapsed.Seconds(),
	}, nil
}
