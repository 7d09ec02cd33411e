package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/wasmkube/wasmkube/wasm/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/kubewarden/regobuild"
)

func newModuleBuildRegoCommand(s streams) *cobra.Command {
	var opts regobuild.Options
	var metadataPath, outPath string
	cmd := &cobra.Command{
		Use:   "build-rego FILE.rego|DIR... [-e package/rule] [-m metadata.yml] -o POLICY.wasm",
		Short: "Compile Rego to a Kubewarden policy of execution mode opa or gatekeeper (the role of opa build -t wasm + kwctl annotate)",
		Long: `Compiles Rego files (and the data.json/data.yaml files beside them, as static data) to one
WebAssembly module of OPA's wasm ABI with OPA's own compiler, offline, and writes metadata.yml into
it as Kubewarden metadata. The metadata's executionMode says how the policy runs: opa (input
{"request": …}, the result an AdmissionReview) or gatekeeper (input {"parameters": …, "review": …},
the result the violations). Without -m the policy is executionMode opa with no rules.

Entrypoints are the rules -e names (package path and rule, slash-separated: policy/violation) and
those marked with a METADATA annotation "entrypoint: true". Rego v1 syntax unless --v0.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Paths = args
			if metadataPath != "" {
				var err error
				if opts.Metadata, err = readMetadataFile(metadataPath); err != nil {
					return err
				}
			}
			bin, err := regobuild.Build(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if err := os.WriteFile(outPath, bin, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(s.out, "wrote %s (%d bytes)\n", outPath, len(bin))
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&opts.Entrypoints, "entrypoint", "e", nil, "a rule to compile, as package/path/rule (repeat for more)")
	cmd.Flags().StringVarP(&metadataPath, "metadata", "m", "", "Kubewarden metadata to write into the policy (executionMode opa or gatekeeper)")
	cmd.Flags().StringVarP(&outPath, "output", "o", "", "where to write the policy")
	cmd.Flags().BoolVar(&opts.RegoV0, "v0", false, "read Rego v0 syntax (OPA before 1.0)")
	_ = cmd.MarkFlagRequired("output")
	return cmd
}

// readMetadataFile reads a Kubewarden metadata file (metadata.yml), strictly.
func readMetadataFile(path string) (*kubewarden.Metadata, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	md, err := kubewarden.ParseMetadata(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return md, nil
}
