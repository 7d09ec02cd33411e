// Command wasmkube-bench is `make bench`: it runs every comparison of package internal/bench and
// writes the report (docs/benchmarks.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/adrg/xdg"

	"github.com/wasmkube/wasmkube/internal/bench"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("wasmkube-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "docs/benchmarks.md", "write the report here (- for stdout)")
	rounds := fs.Int("rounds", 5, "repeats of every comparison")
	only := fs.String("only", "", "comma-separated steps to run (build, start, admission, reload, access, workloads, calls, binary); all when empty")
	base := fs.String("base", "", "a git revision whose wasmkube the start and admission comparisons also run, interleaved (before/after)")
	keep := fs.Bool("keep", false, "keep the work dir (binaries, data dirs, logs) for a look afterwards")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if err := runBench(*out, *rounds, *only, *base, *keep, log); err != nil {
		log.Error("bench failed", "err", err)
		return 1
	}
	return 0
}

func runBench(out string, rounds int, only, base string, keep bool, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "wasmkube-bench-")
	if err != nil {
		return err
	}
	if keep {
		log.Info("keeping the work dir", "dir", work)
	} else {
		defer os.RemoveAll(work)
	}
	cfg := bench.DefaultConfig(root, work, filepath.Join(xdg.CacheHome, "wasmkube", "bench"))
	cfg.Rounds, cfg.Base, cfg.Log = rounds, base, log
	if only != "" {
		cfg.Steps = strings.Split(only, ",")
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	return write(out, rep)
}

// moduleRoot is the directory of the go.mod the go command sees from here.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(data), "module github.com/wasmkube/wasmkube\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("run from inside the wasmkube module (no go.mod of github.com/wasmkube/wasmkube above %s)", dir)
		}
	}
}

// write renders the report to out through a temp file, so that a failed write keeps the old one.
func write(out string, rep *bench.Report) error {
	if out == "-" {
		return rep.Markdown(os.Stdout)
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := rep.Markdown(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}
