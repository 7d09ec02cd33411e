// Package cli holds the wasmkube commands: thin cobra wrappers over the wasmkube library, one
// file per command. Run is the whole program; main only exits with its result. It is where the
// example modules (package examples) join the library, as the built-in modules of `up`.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/profiles"
)

// ProfileEnv names the environment variable that sets the default profile.
const ProfileEnv = "WASMKUBE_PROFILE"

// streams are the program's standard streams.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// exitError carries a specific exit code out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Run runs wasmkube with args (without the program name) and returns the exit code. SIGINT and
// SIGTERM cancel the running command (for `up`: a clean shutdown).
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCommand(streams{in: stdin, out: stdout, err: stderr})
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	var exit exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	default:
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
}

func newRootCommand(s streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "wasmkube",
		Short: "A real Kubernetes API server whose authentication, authorization and admission run WebAssembly modules",
		Long: `wasmkube runs etcd, kube-apiserver and kube-controller-manager in one process, from a profile,
and writes a kubeconfig so kubectl works against it.

  wasmkube up --profile demo          start the demo cluster (Ctrl-C stops it; data is kept)
  wasmkube kubectl get ns             kubectl, built in, pointed at the profile's cluster
  wasmkube reset --yes                remove the profile's data and kubeconfig context`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       wasmkube.Version(),
	}
	// Kubernetes' component-base registers a --version flag of its own (a k8s version string or
	// "raw") on pflag's global flag set, which cobra merges into every command; wasmkube's
	// --version is the root's own bool (cobra prints Version for it), and theirs stays hidden.
	root.Flags().Bool("version", false, "print wasmkube's version (the version command says more)")
	_ = pflag.CommandLine.MarkHidden("version")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if f := cmd.Flags().Lookup("version"); cmd != root && f != nil && f.Changed {
			return fmt.Errorf("unknown flag: --version for %q (wasmkube --version or wasmkube version prints the versions)", cmd.CommandPath())
		}
		return nil
	}
	root.AddCommand(
		newUpCommand(s),
		newKubeconfigCommand(s),
		newResetCommand(s),
		newProfilesCommand(s),
		newVersionCommand(s),
		newKubectlCommand(s),
		newModuleCommand(s),
		newReloadCommand(s),
		newServeCommand(s),
		newDecisionsCommand(s),
	)
	return root
}

// defaultProfile is $WASMKUBE_PROFILE or "demo".
func defaultProfile() string {
	if p := os.Getenv(ProfileEnv); p != "" {
		return p
	}
	return "demo"
}

// profileFlags are the flags that choose a profile and its data directory.
type profileFlags struct {
	profile string
	dataDir string
}

func (f *profileFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&f.profile, "profile", "p", defaultProfile(), "profile name or path to a profile file (default from $"+ProfileEnv+")")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "data directory (default: the profile's dataDir, else $XDG_DATA_HOME/wasmkube/NAME)")
}

// resolve loads the profile and returns it with its data directory.
func (f *profileFlags) resolve() (*profiles.Loaded, string, error) {
	p, err := wasmkube.ResolveProfile(f.profile)
	if err != nil {
		return nil, "", err
	}
	dir := f.dataDir
	if dir == "" {
		dir = wasmkube.DataDir(p)
	}
	return p, dir, nil
}
