package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/wasmkube/wasmkube/apiserver"
)

func newKubeconfigCommand(s streams) *cobra.Command {
	var (
		pf       profileFlags
		pathOnly bool
	)
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print the profile's kubeconfig (or its path)",
		Example: `  export KUBECONFIG=$(wasmkube kubeconfig --path)
  wasmkube kubeconfig --profile minimal > minimal.kubeconfig`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, dataDir, err := pf.resolve()
			if err != nil {
				return err
			}
			path := apiserver.Layout{DataDir: dataDir}.Kubeconfig()
			data, err := os.ReadFile(path)
			if os.IsNotExist(err) {
				return fmt.Errorf("profile %s has no kubeconfig yet (%s): start it with `wasmkube up --profile %s`", p.Name, path, profileRef(p))
			} else if err != nil {
				return err
			}
			if pathOnly {
				_, err = fmt.Fprintln(s.out, path)
				return err
			}
			_, err = s.out.Write(data)
			return err
		},
	}
	pf.add(cmd)
	cmd.Flags().BoolVar(&pathOnly, "path", false, "print the kubeconfig's path instead of its content")
	return cmd
}
