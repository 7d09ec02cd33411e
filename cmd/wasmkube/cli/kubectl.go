package cli

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/wasmkube/wasmkube/apiserver"
)

func newKubectlCommand(s streams) *cobra.Command {
	return &cobra.Command{
		Use:   "kubectl [--profile NAME] [kubectl args…]",
		Short: "Run the built-in kubectl against the profile's cluster",
		Long: `Run kubectl (built into wasmkube) with the profile's kubeconfig and a discovery cache inside the
profile's data directory, unless --kubeconfig or --cache-dir are given. A leading
--profile NAME (or --profile=NAME) picks the profile; everything else goes to kubectl.`,
		Example: `  wasmkube kubectl get ns
  wasmkube kubectl --profile minimal get --raw /readyz
  wasmkube kubectl -- --token magic-token auth whoami`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			profile, rest := splitProfileArg(args)
			pf := profileFlags{profile: profile}
			_, dataDir, err := pf.resolve()
			if err != nil {
				return err
			}
			return runKubectl(s, apiserver.Layout{DataDir: dataDir}, rest)
		},
	}
}

// splitProfileArg takes a leading "--profile NAME" or "--profile=NAME" (and a "--" after it) off
// args. kubectl has a --profile flag of its own (for pprof), which stays usable later in args.
func splitProfileArg(args []string) (string, []string) {
	profile := defaultProfile()
	switch {
	case len(args) >= 2 && (args[0] == "--profile" || args[0] == "-p"):
		profile, args = args[1], args[2:]
	case len(args) >= 1 && strings.HasPrefix(args[0], "--profile="):
		profile, args = strings.TrimPrefix(args[0], "--profile="), args[1:]
	}
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	return profile, args
}
