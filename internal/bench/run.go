package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Config says what a run measures and how often.
type Config struct {
	// Root is the module's root directory (where go.mod is).
	Root string
	// WorkDir holds the run's binaries, homes and clusters; removed afterwards by the caller.
	WorkDir string
	// CacheDir keeps the separate-process baseline's binaries between runs.
	CacheDir string
	// Rounds of every interleaved comparison.
	Rounds int
	// Creates per way and round (admission latency); Requests per row and round (access).
	Creates, Requests int
	// Clients and Duration of each throughput measurement.
	Clients  int
	Duration time.Duration
	// CallCount is go test's -count for the module-call benchmarks.
	CallCount int
	// Base is a git revision whose wasmkube the start and admission comparisons also run,
	// interleaved with this tree's (before/after in one run); none when empty.
	Base string
	// Steps to run (build, start, admission, reload, access, workloads, calls, binary); all when
	// empty. build is
	// always run when another step needs its binaries.
	Steps []string
	Log   *slog.Logger
}

// DefaultConfig is what `make bench` runs: under 10 minutes on 2 cores once the baseline's
// binaries are cached.
func DefaultConfig(root, workDir, cacheDir string) Config {
	return Config{Root: root, WorkDir: workDir, CacheDir: cacheDir, Rounds: 5, Creates: 200, Requests: 300,
		Clients: 16, Duration: 2 * time.Second, CallCount: 5, Log: slog.Default()}
}

// Report is everything one run measured.
type Report struct {
	Machine  Machine
	Began    time.Time
	Took     time.Duration
	Config   Config
	Separate separateBinaries
	Start    []StartRow
	Admit    *AdmissionResult
	Reload   *ReloadResult
	Access   *AccessResult
	Calls    []CallBench
	Binary   *BinaryResult
	// Workloads is the 1,000-pod run on simulated nodes.
	Workloads *WorkloadResult
}

// Run builds what it needs and runs every comparison in turn.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	rep := &Report{Began: time.Now(), Config: cfg}
	var err error
	if rep.Machine, err = describeMachine(ctx, cfg.Root); err != nil {
		return nil, err
	}
	steps := []struct {
		name string
		run  func(context.Context, Config, *Report) error
	}{
		{"build", buildAll},
		{"start", runStart},
		{"admission", runAdmission},
		{"reload", runReload},
		{"access", runAccess},
		{"workloads", runWorkloads},
		{"calls", runCalls},
		{"binary", runBinary},
	}
	for _, s := range steps {
		if !cfg.wants(s.name) && s.name != "build" {
			continue
		}
		began := time.Now()
		cfg.Log.Info("bench step", "step", s.name)
		if err := s.run(ctx, cfg, rep); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		cfg.Log.Info("bench step done", "step", s.name, "took", time.Since(began).Round(time.Second))
	}
	rep.Took = time.Since(rep.Began)
	return rep, nil
}

// binPath is where buildAll puts this tree's wasmkube.
func binPath(cfg Config) string { return filepath.Join(cfg.WorkDir, "bin", "wasmkube") }

// baseBinPath is where buildAll puts the base revision's wasmkube.
func baseBinPath(cfg Config) string { return filepath.Join(cfg.WorkDir, "bin", "wasmkube-base") }

// homes are the environments of a step: this tree's, and the base revision's when comparing,
// with the labels of their rows ("" for this tree).
func (c Config) homes(name string) ([]home, []string, error) {
	h, err := newHome(filepath.Join(c.WorkDir, name), binPath(c))
	if err != nil || c.Base == "" {
		return []home{h}, []string{""}, err
	}
	base, err := newHome(filepath.Join(c.WorkDir, name+"-base"), baseBinPath(c))
	return []home{h, base}, []string{"", c.Base}, err
}

func buildAll(ctx context.Context, cfg Config, rep *Report) error {
	if _, err := buildWasmkube(ctx, cfg.Root, filepath.Dir(binPath(cfg))); err != nil {
		return err
	}
	if cfg.Base != "" {
		if err := buildBase(ctx, cfg.Root, cfg.Base, baseBinPath(cfg)); err != nil {
			return err
		}
	}
	if !cfg.wants("start") {
		return nil
	}
	var err error
	rep.Separate, err = buildSeparate(ctx, cfg.Root, cfg.CacheDir)
	return err
}

// wants says whether the run includes the step.
func (c Config) wants(step string) bool { return len(c.Steps) == 0 || slices.Contains(c.Steps, step) }

func runStart(ctx context.Context, cfg Config, rep *Report) error {
	warm, labels, err := cfg.homes("start-warm")
	if err != nil {
		return err
	}
	fresh, _, err := cfg.homes("start-fresh")
	if err != nil {
		return err
	}
	for _, h := range warm {
		if err := writeDemoVariant(ctx, h, bareProfile, withoutNodes); err != nil {
			return err
		}
	}
	rep.Start, err = measureStart(ctx, warm, fresh, labels, rep.Separate, cfg.Rounds)
	return err
}

func runAdmission(ctx context.Context, cfg Config, rep *Report) error {
	homes, labels, err := cfg.homes("admission")
	if err != nil {
		return err
	}
	rep.Admit, err = measureAdmission(ctx, cfg.Root, homes, labels, cfg.Rounds, cfg.Creates, cfg.Clients, cfg.Duration)
	return err
}

func runAccess(ctx context.Context, cfg Config, rep *Report) error {
	h, err := newHome(filepath.Join(cfg.WorkDir, "access"), binPath(cfg))
	if err != nil {
		return err
	}
	rep.Access, err = measureAccess(ctx, h, cfg.Rounds, cfg.Requests)
	return err
}

func runCalls(ctx context.Context, cfg Config, rep *Report) error {
	for _, c := range callBenches(cfg.CallCount) {
		got, err := measureCalls(ctx, cfg.Root, c)
		if err != nil {
			return err
		}
		rep.Calls = append(rep.Calls, got)
	}
	return nil
}

func runBinary(ctx context.Context, cfg Config, rep *Report) error {
	var err error
	if rep.Binary, err = measureBinary(binPath(cfg)); err != nil {
		return err
	}
	if rep.Binary.ExamplesMB, err = examplesMB(cfg.Root); err != nil {
		return err
	}
	rep.Binary.NoKubectlMB, err = buildStripped(ctx, cfg.Root, filepath.Dir(binPath(cfg)), "nokubectl")
	return err
}

// Machine describes where a run ran.
type Machine struct {
	CPU, OS, Go, Revision string
	Cores                 int
	MemoryGiB             float64
}

func describeMachine(ctx context.Context, root string) (Machine, error) {
	m := Machine{CPU: cpuModel(), Cores: numCPU(), MemoryGiB: memTotalGiB()}
	var err error
	if m.Go, err = goCmd(ctx, root, "env", "GOVERSION"); err != nil {
		return m, err
	}
	goos, _ := goCmd(ctx, root, "env", "GOOS")
	goarch, _ := goCmd(ctx, root, "env", "GOARCH")
	m.OS = goos + "/" + goarch
	m.Revision = gitDescribe(root)
	return m, nil
}

func gitDescribe(root string) string {
	out, err := runOutput(context.Background(), "git", append(os.Environ(), "GIT_DIR="+filepath.Join(root, ".git")), "describe", "--always", "--dirty")
	if err != nil {
		return "unknown"
	}
	return trimSpace(out)
}
