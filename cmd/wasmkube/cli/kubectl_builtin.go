//go:build !nokubectl

package cli

import (
	"fmt"
	"os"
	"strings"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/wasmkube/wasmkube/apiserver"
)

// kubectlExit carries kubectl's exit code out of its fatal-error handler.
type kubectlExit struct{ code int }

func runKubectl(s streams, layout apiserver.Layout, args []string) (err error) {
	apiserver.StampKubernetesVersion() // kubectl reports the same version as the server
	// kubectl names itself by os.Args[0] in a few hints ("… 'wasmkube get resource/<name>'") and
	// in --record's change-cause: while it runs, that is the command that works, "wasmkube kubectl".
	// The User-Agent, also made from os.Args[0], stays kubectl's ("kubectl/v1.37.2 (…)"), as the
	// server's audit log and metrics expect of kubectl.
	defer func(arg0 string) { os.Args[0] = arg0 }(os.Args[0])
	os.Args[0] = "kubectl"
	userAgent := rest.DefaultKubernetesUserAgent()
	os.Args[0] = "wasmkube kubectl"
	kubeconfigPath, cacheDir := layout.Kubeconfig(), layout.KubectlCache()
	flags := genericclioptions.NewConfigFlags(true).WithDeprecatedPasswordFlag().WithDiscoveryBurst(300).WithDiscoveryQPS(50.0)
	flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
		c.UserAgent = userAgent
		return c
	}
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
