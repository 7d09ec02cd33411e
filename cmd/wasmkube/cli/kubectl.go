package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

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

// kubectlExit carries kubectl's exit code out of its fatal-error handler.
type kubectlExit struct{ code int }

func runKubectl(s streams, layout apiserver.Layout, args []string) (err error) {
	apiserver.StampKubernetesVersion() // kubectl reports the same version as the server
	kubeconfigPath, cacheDir := layout.Kubeconfig(), layout.KubectlCache()
	flags := genericclioptions.NewConfigFlags(true).WithDeprecatedPasswordFlag().WithDiscoveryBurst(300).WithDiscoveryQPS(50.0)
	flags.KubeConfig = &kubeconfigPath
	flags.CacheDir = &cacheDir
	ioStreams := genericiooptions.IOStreams{In: s.in, Out: s.out, ErrOut: s.err}
	cmd := kubectlcmd.NewDefaultKubectlCommandWithArgs(kubectlcmd.KubectlOptions{
		Arguments:   append([]string{"kubectl"}, args...),
		ConfigFlags: flags.WithWarningPrinter(ioStreams),
		IOStreams:   ioStreams,
	})
	cmd.SetArgs(args)
	cmd.SetIn(s.in)
	cmd.SetOut(s.out)
	cmd.SetErr(s.err)

	// kubectl reports fatal errors through a handler that calls os.Exit by default; turn that into
	// an exit code here so nothing below main exits the process.
	cmdutil.BehaviorOnFatal(func(msg string, code int) {
		if msg != "" {
			if !strings.HasSuffix(msg, "\n") {
				msg += "\n"
			}
			fmt.Fprint(s.err, msg)
		}
		panic(kubectlExit{code})
	})
	defer cmdutil.DefaultBehaviorOnFatal()
	defer func() {
		if r := recover(); r != nil {
			ke, ok := r.(kubectlExit)
			if !ok {
				panic(r)
			}
			err = exitError(ke)
		}
	}()
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(s.err, "error: %v\n", err)
		return exitError{1}
	}
	return nil
}
