package cli

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wasmkube/wasmkube/wasm/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/source"
)

func newModulePullCommand(s streams) *cobra.Command {
	var pin, out string
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Fetch a module from a registry or an https URL into the cache (and print its digest)",
		Long: `Fetch the module REF names, verify it and keep it in the module cache
($XDG_CACHE_HOME/wasmkube/sources), so that a profile naming it starts offline. REF is
registry://HOST/REPO:TAG (Kubewarden's scheme), oci://HOST/REPO:TAG, either with @sha256:… for
the manifest, or https://…/NAME.wasm with --sha256. It prints the module's digest: the sha256 to
pin in the profile.`,
		Example: `  wasmkube module pull registry://ghcr.io/kubewarden/policies/pod-privileged:v0.2.2
  wasmkube module pull https://example.com/magic.wasm --sha256 sha256:… -o magic.wasm`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !source.IsRemote(args[0]) {
				return fmt.Errorf("%s: give registry://…, oci://… or https://…", args[0])
			}
			m, err := source.New(source.Config{}).Fetch(cmd.Context(), args[0], pin)
			if err != nil {
				return err
			}
			if out != "" {
				if err := os.WriteFile(out, m.Bytes, 0o644); err != nil {
					return err
				}
			}
			how := "pulled"
			if m.Cached {
				how = "cached"
			}
			fmt.Fprintf(s.out, "%s %s (%d bytes)\n  sha256: %s\n", how, m.From, len(m.Bytes), m.Digest)
			if out != "" {
				fmt.Fprintf(s.out, "  wrote %s\n", out)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&pin, "sha256", "", "the module's expected digest (required for https://)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "also write the module to this file")
	return cmd
}

func newModulePushCommand(s streams) *cobra.Command {
	var extra []string
	cmd := &cobra.Command{
		Use:   "push MODULE.wasm REF",
		Short: "Push a module to an OCI registry as Kubewarden does (kwctl push)",
		Long: `Push MODULE.wasm to REF (registry://HOST/REPO:TAG or oci://…) as the OCI artifact Kubewarden
pushes and pulls: a config of ` + source.WasmConfigMediaType + `, the module as the one layer of
` + source.WasmLayerMediaType + `, and on the manifest the annotations of the policy's metadata
(wasmkube module annotate, kwctl annotate), the file's name (org.opencontainers.image.title) and
any --annotation. Credentials are those of ~/.docker/config.json. It prints the reference by
digest, to pin in a profile.`,
		Example: `  wasmkube module push magic-validate.wasm registry://localhost:5000/policies/magic-validate:v1`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			bin, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			annotations, err := pushAnnotations(args[0], bin, extra)
			if err != nil {
				return err
			}
			ref, err := source.New(source.Config{}).Push(cmd.Context(), args[1], bin, annotations)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.out, "pushed %s (%d bytes)\n  by digest: %s\n  sha256:    %s\n", args[1], len(bin), ref, source.Digest(bin))
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&extra, "annotation", nil, "a manifest annotation KEY=VALUE (repeatable)")
	return cmd
}

// pushAnnotations are a pushed module's manifest annotations: its Kubewarden metadata's
// annotations, its file name, then the --annotation flags.
func pushAnnotations(file string, bin []byte, extra []string) (map[string]string, error) {
	annotations := map[string]string{"org.opencontainers.image.title": filepath.Base(file)}
	md, found, err := kubewarden.ReadMetadata(bin)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if found {
		maps.Copy(annotations, md.Annotations)
	}
	for _, a := range extra {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--annotation %q: give KEY=VALUE", a)
		}
		annotations[k] = v
	}
	return annotations, nil
}
