package bench

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// CallBench is a `go test -bench` run whose rows report p50-µs (wasm/internal/wasmtest's
// MeasureCalls): the module calls outside the API server.
type CallBench struct {
	Package, Bench, Benchtime string
	Count                     int
	Rows                      []CallRow
}

// CallRow is one sub-benchmark's p50 call latency (µs), one value per -count repeat.
type CallRow struct {
	Name string
	P50  Series
}

// Command is the go test command line that measures it.
func (c CallBench) Command() string {
	return fmt.Sprintf("go test %s -run '^$' -bench %s -benchtime %s -count %d", c.Package, c.Bench, c.Benchtime, c.Count)
}

// callBenches are the module-call benchmarks `make bench` runs.
func callBenches(count int) []CallBench {
	return []CallBench{
		{Package: "./wasm/envelope", Bench: "BenchmarkAdmitMagicValidate", Benchtime: "1000x", Count: count},
		{Package: "./wasm/kubewarden", Bench: "BenchmarkKubewardenPolicy", Benchtime: "500x", Count: count},
		{Package: "./wasm/kubewarden", Bench: "BenchmarkRegoEvaluators", Benchtime: "2000x", Count: count},
	}
}

// measureCalls runs the benchmark and collects each row's p50-µs.
func measureCalls(ctx context.Context, root string, c CallBench) (CallBench, error) {
	out, err := goCmd(ctx, root, "test", c.Package, "-run", "^$", "-bench", "^"+c.Bench+"$",
		"-benchtime", c.Benchtime, "-count", strconv.Itoa(c.Count))
	if err != nil {
		return c, err
	}
	c.Rows, err = parseP50(out, c.Bench)
	return c, err
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+.*?([\d.]+) p50-µs`)

// parseP50 reads `go test -bench` output: one p50-µs per line, rows in first-seen order.
func parseP50(out, bench string) ([]CallRow, error) {
	var rows []CallRow
	index := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(m[1], bench), "/")
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return nil, fmt.Errorf("benchmark line %q: %w", line, err)
		}
		i, ok := index[name]
		if !ok {
			i = len(rows)
			index[name] = i
			rows = append(rows, CallRow{Name: name})
		}
		rows[i].P50.Add(v)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("no p50-µs in the output of %s:\n%s", bench, out)
	}
	return rows, nil
}
