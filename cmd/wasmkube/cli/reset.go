package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/gofrs/flock"
	"github.com/spf13/cobra"

	"github.com/wasmkube/wasmkube/apiserver"
	"github.com/wasmkube/wasmkube/apiserver/kubeconfig"
	"github.com/wasmkube/wasmkube/datadir"
)

func newResetCommand(s streams) *cobra.Command {
	var (
		pf  profileFlags
		yes bool
	)
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Remove the profile's context from your kubeconfig and, with --yes, its data",
		Long: `Remove the context, cluster and user wasmkube-NAME that 'up --merge-kubeconfig' merged into your
kubeconfig. With --yes, also delete the profile's data directory (certificates, etcd data,
kubeconfig, logs). A running cluster is never reset: stop it first. Only a directory wasmkube
created (it holds wasmkube-data.json) is deleted, never /, your home directory or a directory
that holds the profile file.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return reset(s, pf, yes) },
	}
	pf.add(cmd)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "also delete the profile's data directory")
	return cmd
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
