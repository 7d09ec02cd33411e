package etcd

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkStart measures Start → ready of the embedded etcd and one write through its client
// endpoint: fresh on an empty data dir, warm on the data of the previous start. It reports the
// median; compare builds in one run (docs/rationale.md, "Start-up").
//
//	go test ./etcd -run '^$' -bench BenchmarkStart -benchtime 20x
func BenchmarkStart(b *testing.B) {
	for _, fresh := range []bool{true, false} {
		name := map[bool]string{true: "fresh", false: "warm"}[fresh]
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			cfg := benchConfig(dir, 0)
			if !fresh {
				startStop(b, cfg)
			}
			var ready []time.Duration
			for i := 0; i < b.N; i++ {
				if fresh {
					cfg = benchConfig(dir, i+1)
				}
				ready = append(ready, startStop(b, cfg))
			}
			slices.Sort(ready)
			b.ReportMetric(float64(ready[len(ready)/2].Microseconds())/1000, "ready-ms")
		})
	}
}

func benchConfig(dir string, i int) Config {
	d := filepath.Join(dir, fmt.Sprint(i))
	return Config{DataDir: filepath.Join(d, "etcd"), Socket: filepath.Join(d, "etcd.sock")}
}

// startStop starts etcd, writes a key through its endpoint, stops it and returns start → written.
func startStop(b *testing.B, cfg Config) time.Duration {
	b.Helper()
	began := time.Now()
	s, err := Start(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	c := client(b, s.Endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		b.Fatal(err)
	}
	took := time.Since(began)
	c.Close()
	s.Close()
	return took
}
