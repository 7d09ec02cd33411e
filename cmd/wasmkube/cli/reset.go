package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gofrs/flock"
	"github.com/spf13/cobra"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/apiserver"
	"github.com/wasmkube/wasmkube/apiserver/kubeconfig"
	"github.com/wasmkube/wasmkube/datadir"
)

func newResetCommand(s streams) *cobra.Command {
	var (
		pf    profileFlags
		yes   bool
		cache bool
	)
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Remove the profile's context from your kubeconfig and, with --yes, its data",
		Long: `Remove the context, cluster and user wasmkube-NAME that 'up --merge-kubeconfig' merged into your
kubeconfig. With --yes, also delete the profile's data directory (certificates, etcd data,
kubeconfig, logs). A running cluster is never reset: stop it first. Only a directory wasmkube
created (it holds wasmkube-data.json) is deleted, never /, your home directory or a directory
that holds the profile file.

Compiled modules are cached outside the data directory, for every profile
($XDG_CACHE_HOME/wasmkube/modules); --cache deletes that cache too (the next start of any profile
compiles its modules again). Modules fetched from registries are kept
($XDG_CACHE_HOME/wasmkube/sources): they are what starts work offline with.`,
		Example: `  wasmkube reset --yes                     # start the demo profile over
  wasmkube reset --profile minimal --yes --cache`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := reset(s, pf, yes); err != nil {
				return err
			}
			return resetCache(s, cache)
		},
	}
	pf.add(cmd)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "also delete the profile's data directory")
	cmd.Flags().BoolVar(&cache, "cache", false, "also delete the compiled-module cache that every profile shares ("+wasmkube.ModuleCacheDir()+")")
	return cmd
}

// resetCache deletes the compiled-module cache when asked, and otherwise says where it is and
// how large it has grown.
func resetCache(s streams, remove bool) error {
	dir := wasmkube.ModuleCacheDir()
	size, err := dirSize(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("module cache %s: %w", dir, err)
	case !remove:
		fmt.Fprintf(s.out, "compiled modules kept in %s (%.0f MB, shared by every profile; --cache deletes them)\n", dir, float64(size)/1e6)
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("delete the module cache %s: %w", dir, err)
	}
	fmt.Fprintf(s.out, "deleted %s (%.0f MB of compiled modules)\n", dir, float64(size)/1e6)
	return nil
}

// dirSize is the size of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var size int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			size += info.Size()
		}
		return nil
	})
	return size, err
}

// reset removes the profile's merged context and, with yes, its data directory: only one
// wasmkube created, and never while its cluster runs.
func reset(s streams, pf profileFlags, yes bool) error {
	p, dataDir, err := pf.resolve()
	if err != nil {
		return err
	}
	exists := true
	if _, err := os.Stat(dataDir); errors.Is(err, os.ErrNotExist) {
		exists = false
	}
	if yes && exists {
		profileFile := ""
		if !p.IsBuiltin() {
			profileFile = p.Source
		}
		if err := datadir.CheckRemovable(dataDir, profileFile); err != nil {
			return err
		}
	}
	unlock, err := lockIfRunnable(p.Name, apiserver.Layout{DataDir: dataDir})
	if err != nil {
		return err
	}
	defer unlock()
	removed, err := kubeconfig.Remove(kubeconfig.UserConfigAccess(), p.ContextName())
	if err != nil {
		return err
	}
	if removed {
		fmt.Fprintf(s.out, "removed context %s from your kubeconfig\n", p.ContextName())
	}
	switch {
	case !yes:
		fmt.Fprintf(s.out, "data kept in %s (add --yes to delete it)\n", dataDir)
	case !exists:
		fmt.Fprintf(s.out, "no data in %s\n", dataDir)
	default:
		if err := os.RemoveAll(dataDir); err != nil {
			return fmt.Errorf("delete %s: %w", dataDir, err)
		}
		fmt.Fprintf(s.out, "deleted %s\n", dataDir)
	}
	return nil
}

// lockIfRunnable takes the data dir's lock so that a running cluster is never reset, and returns
// its release. A directory without a lock file has never run a cluster: nothing is written there.
func lockIfRunnable(name string, layout apiserver.Layout) (func(), error) {
	if _, err := os.Stat(layout.Lock()); err != nil {
		return func() {}, nil
	}
	lk := flock.New(layout.Lock())
	locked, err := lk.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", layout.Lock(), err)
	}
	if !locked {
		return nil, fmt.Errorf("profile %s is running (lock %s): stop it first (Ctrl-C where `wasmkube up` runs)", name, layout.Lock())
	}
	return func() { _ = lk.Unlock() }, nil
}
