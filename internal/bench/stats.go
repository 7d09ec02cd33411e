// Package bench is `make bench`: it measures wasmkube against the alternatives a user would pick
// instead (an etcd binary and a kube-apiserver binary run side by side, a CEL
// ValidatingAdmissionPolicy, webhooks on loopback HTTPS, the static token file and RBAC) in one
// run on one machine, and renders docs/benchmarks.md from the results. Every comparison is
// repeated and interleaved, so that both sides see the same machine, and reported as the minimum,
// median and maximum of its repeats; ratios are taken between medians of the same run.
//
// Benchmarks are not tests: nothing here asserts a duration. The package's tests check the
// harness itself (the webhook server's answers, the rendering).
package bench

import (
	"fmt"
	"slices"
	"time"
)

// Series is one quantity measured once per repeat.
type Series []float64

// Add appends one repeat's value.
func (s *Series) Add(v float64) { *s = append(*s, v) }

// AddDuration appends a duration in the unit given (time.Second, time.Microsecond, …).
func (s *Series) AddDuration(d, unit time.Duration) { s.Add(float64(d) / float64(unit)) }

// Min is the smallest value (0 for none).
func (s Series) Min() float64 { return s.quantile(0) }

// Median is the middle value (the mean of the two middle values for an even count).
func (s Series) Median() float64 {
	if len(s) == 0 {
		return 0
	}
	v := sorted(s)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// Max is the largest value (0 for none).
func (s Series) Max() float64 { return s.quantile(1) }

func (s Series) quantile(q float64) float64 {
	if len(s) == 0 {
		return 0
	}
	v := sorted(s)
	return v[int(q*float64(len(v)-1))]
}

func sorted(s Series) []float64 {
	v := slices.Clone(s)
	slices.Sort(v)
	return v
}

// Format renders "median (min–max)" with the precision given.
func (s Series) Format(precision int) string {
	if len(s) == 0 {
		return "n/a"
	}
	if len(s) == 1 {
		return fmt.Sprintf("%.*f", precision, s[0])
	}
	return fmt.Sprintf("%.*f (%.*f–%.*f)", precision, s.Median(), precision, s.Min(), precision, s.Max())
}

// Ratio is the ratio of two series' medians, "n/a" when the base is zero.
func Ratio(s, base Series) string {
	if base.Median() == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", s.Median()/base.Median())
}

// percentile of durations (p in 0..100), by nearest rank on a sorted copy.
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s) - 1) * p / 100
	return s[i]
}
