package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/profiles"
)

func newProfilesCommand(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profiles",
		Short: "List and show profiles",
		Long: `A profile (apiVersion wasmkube.dev/v1alpha1, kind Profile) describes one local cluster: its
address and port, data directory, etcd, controllers, extra kube-apiserver flags and modules.
--profile NAME looks for $XDG_CONFIG_HOME/wasmkube/profiles/NAME.yaml, then the built-in
profiles; --profile PATH reads a file.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List user and built-in profiles",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return listProfiles(s) },
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show NAME|PATH",
		Short: "Print a profile as it is found, after checking it",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			p, err := wasmkube.ResolveProfile(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(s.out, "# source: %s\n# data dir: %s\n", p.Source, wasmkube.DataDir(p))
			_, err = s.out.Write(p.Raw)
			return err
		},
	})
	return cmd
}

// listProfiles prints a table of the profiles found, one line each, and after it why each
// invalid one is invalid (an error of several lines would break the table).
func listProfiles(s streams) error {
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSOURCE\tSTATUS")
	var invalid []profiles.Entry
	for _, e := range profiles.NewFinder(wasmkube.UserProfileDir()).List() {
		status := "ok"
		switch {
		case e.Err != nil:
			status = "invalid (below)"
			invalid = append(invalid, e)
		case e.Shadowed:
			status = "hidden by the user profile of the same name"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Name, e.Source, status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, e := range invalid {
		fmt.Fprintf(s.out, "\n%s is invalid:\n  %s\n", e.Source, strings.ReplaceAll(strings.TrimSpace(e.Err.Error()), "\n", "\n  "))
	}
	return nil
}
