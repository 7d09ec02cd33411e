package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestStopRunsNewestFirstOnce(t *testing.T) {
	s := New()
	var mu sync.Mutex
	var order []int
	for i := range 3 {
		s.OnStop(func() error {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, i)
			if i == 1 {
				return errors.New("part 1 failed to stop")
			}
			if i == 2 {
				return context.Canceled // a part stopped by cancellation is not an error
			}
			return nil
		})
	}
	s.Stop(nil)
	s.Stop(errors.New("too late"))
	<-s.Done()
	if !slices.Equal(order, []int{2, 1, 0}) {
		t.Errorf("stop order %v, want [2 1 0] once", order)
	}
	if err := s.Err(); err == nil || err.Error() != "part 1 failed to stop" {
		t.Errorf("err %v, want the stop function's error only", err)
	}
}

func TestFirstCauseWins(t *testing.T) {
	s := New()
	s.OnStop(func() error { return errors.New("stop error") })
	if s.Err() != nil {
		t.Fatal("Err before Done")
	}
	cause := errors.New("kube-apiserver stopped")
	s.Stop(cause)
	s.Stop(nil)
	<-s.Done()
	if !errors.Is(s.Err(), cause) {
		t.Errorf("err %v, want the first cause", s.Err())
	}
}

// TestConcurrentStopsAndFailures: a part failing while the user stops, from many goroutines at
// once. Run with -race (make test does): the reason is written in one place, so nothing races.
func TestConcurrentStopsAndFailures(t *testing.T) {
	for range 50 {
		s := New()
		s.OnStop(func() error { return nil })
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(2)
			go func() {
				defer wg.Done()
				if i%2 == 0 {
					s.Stop(fmt.Errorf("part %d failed", i))
				} else {
					s.Stop(nil)
				}
			}()
			go func() {
				defer wg.Done()
				<-s.Done()
				_ = s.Err()
			}()
		}
		wg.Wait()
		if err := s.Err(); err != nil && !slices.Contains([]string{"part 0 failed", "part 2 failed", "part 4 failed", "part 6 failed"}, err.Error()) {
			t.Fatalf("err %v", err)
		}
	}
}
