package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkUp measures `wasmkube up` as a user runs it, in a child process: start → ready (the
// "Press Ctrl-C" line, i.e. /readyz ok, default namespace, controllers started, kubeconfig
// written), RSS at ready, and SIGINT → exit. fresh starts on an empty data dir; warm restarts
// on the data of a previous run. minimal (no controllers) is the baseline measured in the same run.
//
//	go test ./cmd/wasmkube/cli -run '^$' -bench BenchmarkUp -benchtime 5x
func BenchmarkUp(b *testing.B) {
	for _, profile := range []string{"minimal", "demo"} {
		for _, mode := range []string{"fresh", "warm"} {
			b.Run(profile+"/"+mode, func(b *testing.B) { benchmarkUp(b, profile, mode == "fresh") })
		}
	}
}

func benchmarkUp(b *testing.B, profile string, fresh bool) {
	e := newEnv(b)
	dataDir := filepath.Join(e.root, "data", "wasmkube", profile)
	if !fresh {
		startStop(b, e, profile) // leaves data behind for the warm starts
	}
	var ready, stop []time.Duration
	var rss []float64
	for i := 0; i < b.N; i++ {
		if fresh {
			if err := os.RemoveAll(dataDir); err != nil {
				b.Fatal(err)
			}
		}
		r, m, s := startStop(b, e, profile)
		ready, rss, stop = append(ready, r), append(rss, m), append(stop, s)
	}
	b.ReportMetric(median(ready).Seconds(), "ready-s")
	b.ReportMetric(medianFloat(rss), "rss-MB")
	b.ReportMetric(median(stop).Seconds(), "stop-s")
}

// startStop runs one `up` to ready and back down; it returns start→ready, RSS at ready (MB)
// and SIGINT→exit.
func startStop(b *testing.B, e *env, profile string) (time.Duration, float64, time.Duration) {
	b.Helper()
	began := time.Now()
	up := e.startUp("--profile", profile, "--port", "0")
	up.waitReady(b)
	readyAfter := time.Since(began)
	rss, err := rssMB(up.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	began = time.Now()
	if code := up.interrupt(b); code != 0 {
		b.Fatalf("exit %d:\n%s", code, up.text())
	}
	return readyAfter, rss, time.Since(began)
}

func rssMB(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func medianFloat(f []float64) float64 {
	s := append([]float64(nil), f...)
	sort.Float64s(s)
	return s[len(s)/2]
}
