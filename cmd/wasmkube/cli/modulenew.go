package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/internal/scaffold"
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm/guest"
)

func newModuleNewCommand(s streams) *cobra.Command {
	var o scaffold.Options
	var dir string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "new NAME --hook validate|mutate|authn|authz [--kubewarden]",
		Short: "Make a new module: main.go on the Go SDK, a Makefile, a test suite that passes, a profile that runs it",
		Long: `Writes a directory (NAME, or --dir) with a module for the hook: main.go on the wasmkube Go SDK,
go.mod (with the SDK's source in sdk/: it has no published version yet), a Makefile (make, make
test, make run, make up), suite.yaml for wasmkube module test, request.yaml and settings.yaml for
wasmkube module run, and profile.yaml: the demo profile with the module added. It builds with
standard Go and its suite passes as written; then edit main.go. docs/authoring.md walks through it.`,
		Example: `  wasmkube module new team-labels --hook validate
  wasmkube module new require-labels --hook validate --kubewarden
  cd team-labels && make test`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name, o.Version, o.SDK = args[0], wasmkube.Version(), guest.Source()
			demo, ok := profiles.BuiltinSource("demo")
			if !ok {
				return fmt.Errorf("the built-in demo profile is missing")
			}
			o.DemoProfile = demo
			files, err := scaffold.Plan(o)
			if err != nil {
				return err
			}
			if dir == "" {
				dir = o.Name
			}
			if dryRun {
				for _, f := range files {
					fmt.Fprintf(s.out, "%s (%d bytes)\n", filepath.Join(dir, filepath.FromSlash(f.Path)), len(f.Data))
				}
				return nil
			}
			if err := scaffold.Write(dir, files); err != nil {
				return err
			}
			fmt.Fprintf(s.out, "wrote %s (%d files)\n\nNext:\n  cd %s\n  make test      # build %s.wasm with standard Go, run suite.yaml\n  make run       # send request.yaml: the module's answer and the API server's decision\n  make up        # the demo cluster with %s added (another terminal: wasmkube kubectl ...; see README.md)\nThen edit main.go, add cases to suite.yaml and make test again; with make up running, make reloads\nthe module in the cluster (wasmkube decisions -f shows what it decides).\n",
				dir, len(files), dir, o.Name, o.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Hook, "hook", "", "validate | mutate | authn | authz (required)")
	cmd.Flags().BoolVar(&o.Kubewarden, "kubewarden", false, "a Kubewarden policy (waPC) instead of a module of the original ABI (--hook validate)")
	cmd.Flags().StringVar(&dir, "dir", "", "the directory to write (default: NAME); must not exist or be empty")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list the files instead of writing them")
	_ = cmd.MarkFlagRequired("hook")
	return cmd
}
