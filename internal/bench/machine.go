package bench

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

func trimSpace(s string) string { return strings.TrimSpace(s) }

func numCPU() int { return runtime.NumCPU() }

// cpuModel is the first "model name" of /proc/cpuinfo, or GOARCH where there is none.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(data), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return runtime.GOARCH
}

// memTotalGiB is MemTotal of /proc/meminfo (0 where there is none).
func memTotalGiB() float64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / (1 << 20)
		}
	}
	return 0
}
