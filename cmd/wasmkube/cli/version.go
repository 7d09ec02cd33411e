package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/apiserver"
)

func newVersionCommand(s streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print wasmkube's version and the Kubernetes version it embeds",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(s.out, "wasmkube:  %s\nkubernetes: %s\ngo:         %s %s/%s\n",
				wasmkube.Version(), apiserver.KubernetesVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
