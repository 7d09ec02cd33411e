package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StartRow is one way of starting a cluster, measured once per round.
type StartRow struct {
	Name string
	// Ready is exec → ready in seconds: wasmkube's ready line (/readyz ok, the default namespace,
	// controllers started, kubeconfig written), or for the baseline /readyz and the default
	// namespace answering.
	Ready Series
	// RSS is the resident memory at ready in MB (both processes for the baseline).
	RSS Series
	// Stop is SIGINT (SIGTERM for the baseline) → exit in seconds.
	Stop Series
}

// startVariant starts and stops one way once.
type startVariant struct {
	name  string
	run   func(ctx context.Context) (ready time.Duration, rss float64, stop time.Duration, err error)
	reset func() error // makes the next start fresh; nil for warm starts
}

// measureStart runs every variant once per round, in an order rotated each round, after one
// start of each to warm the data dirs and caches.
func measureStart(ctx context.Context, warm, fresh []home, labels []string, bins separateBinaries, rounds int) ([]StartRow, error) {
	variants := startVariants(warm[0], fresh[0], bins)
	for i := 1; i < len(warm); i++ {
		variants = append(variants, wasmkubeVariants(warm[i], fresh[i], labelSuffix(labels[i]))...)
	}
	for _, v := range variants { // warm up: PKI, etcd data, compiled modules, page cache
		if _, _, _, err := v.run(ctx); err != nil {
			return nil, fmt.Errorf("warm-up %s: %w", v.name, err)
		}
	}
	rows := make([]StartRow, len(variants))
	for r := range rounds {
		for k := range variants {
			i := (k + r) % len(variants)
			v := variants[i]
			if v.reset != nil {
				if err := v.reset(); err != nil {
					return nil, err
				}
			}
			ready, rss, stop, err := v.run(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v.name, err)
			}
			rows[i].Name = v.name
			rows[i].Ready.AddDuration(ready, time.Second)
			rows[i].RSS.Add(rss)
			rows[i].Stop.AddDuration(stop, time.Second)
		}
	}
	return rows, nil
}

// startVariants are wasmkube's starts and the separate-process baseline's.
func startVariants(warm, fresh home, bins separateBinaries) []startVariant {
	sep := separateStart{bins: bins, home: warm, profile: "minimal", etcdDir: filepath.Join(warm.root, "separate-etcd")}
	sepFresh := separateStart{bins: bins, home: warm, profile: "minimal", etcdDir: filepath.Join(warm.root, "separate-etcd-fresh")}
	v := wasmkubeVariants(warm, fresh, "")
	return []startVariant{v[0],
		{name: "etcd + kube-apiserver binaries, warm", run: separateOnce(sep)},
		v[1], v[4], v[2],
		{name: "etcd + kube-apiserver binaries, fresh etcd", run: separateOnce(sepFresh), reset: removeAll(sepFresh.etcdDir)},
		v[3],
	}
}

// wasmkubeVariants are the four starts of one wasmkube binary, their names ending in suffix.
func wasmkubeVariants(warm, fresh home, suffix string) []startVariant {
	return []startVariant{
		{name: "wasmkube minimal, warm" + suffix, run: upOnce(warm, "minimal")},
		{name: "wasmkube demo, warm" + suffix, run: upOnce(warm, "demo")},
		{name: "wasmkube minimal, fresh" + suffix, run: upOnce(fresh, "minimal"), reset: removeAll(fresh.dataDir("minimal"))},
		{name: "wasmkube demo, fresh" + suffix, run: upOnce(fresh, "demo"), reset: removeAll(fresh.dataDir("demo"))},
		{name: bareStartRow + suffix, run: upOnce(warm, bareProfile)},
	}
}

// bareStartRow is the row of the demo without kube-scheduler and simulated nodes.
const bareStartRow = "wasmkube demo without scheduler and nodes, warm"

func removeAll(dir string) func() error {
	return func() error { return os.RemoveAll(dir) }
}

func upOnce(h home, profile string) func(context.Context) (time.Duration, float64, time.Duration, error) {
	return func(ctx context.Context) (time.Duration, float64, time.Duration, error) {
		u, ready, err := h.startUp(ctx, profile, profile)
		if err != nil {
			return 0, 0, 0, err
		}
		rss, err := rssMB(u.cmd.Process.Pid)
		if err != nil {
			u.kill()
			return 0, 0, 0, err
		}
		stop, err := u.stop()
		return ready, rss, stop, err
	}
}

func separateOnce(s separateStart) func(context.Context) (time.Duration, float64, time.Duration, error) {
	return func(ctx context.Context) (time.Duration, float64, time.Duration, error) {
		p, ready, err := s.start(ctx)
		if err != nil {
			return 0, 0, 0, err
		}
		rss, err := p.rssMB()
		if err != nil {
			p.kill()
			return 0, 0, 0, err
		}
		stop, err := p.stop()
		return ready, rss, stop, err
	}
}
