package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/gofrs/flock"
	"github.com/spf13/cobra"

	"github.com/wasmkube/wasmkube/apiserver"
	"github.com/wasmkube/wasmkube/apiserver/kubeconfig"
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
kubeconfig, logs). A running cluster is never reset: stop it first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, dataDir, err := pf.resolve()
			if err != nil {
				return err
			}
			layout := apiserver.Layout{DataDir: dataDir}
			lk := flock.New(layout.Lock())
			if _, err := os.Stat(dataDir); err == nil {
				locked, err := lk.TryLock()
				if err != nil {
					return fmt.Errorf("lock %s: %w", layout.Lock(), err)
				}
				if !locked {
					return fmt.Errorf("profile %s is running (lock %s): stop it first (Ctrl-C where `wasmkube up` runs)", p.Name, layout.Lock())
				}
				defer lk.Unlock()
			}
			removed, err := kubeconfig.Remove(kubeconfig.UserConfigAccess(), p.ContextName())
			if err != nil {
				return err
			}
			if removed {
				fmt.Fprintf(s.out, "removed context %s from your kubeconfig\n", p.ContextName())
			}
			if !yes {
				fmt.Fprintf(s.out, "data kept in %s (add --yes to delete it)\n", dataDir)
				return nil
			}
			if _, err := os.Stat(dataDir); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(s.out, "no data in %s\n", dataDir)
				return nil
			}
			if err := os.RemoveAll(dataDir); err != nil {
				return fmt.Errorf("delete %s: %w", dataDir, err)
			}
			fmt.Fprintf(s.out, "deleted %s\n", dataDir)
			return nil
		},
	}
	pf.add(cmd)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "also delete the profile's data directory")
	return cmd
}
