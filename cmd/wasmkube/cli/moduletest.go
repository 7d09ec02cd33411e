package cli

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
)

func newModuleTestCommand(s streams) *cobra.Command {
	var verbose bool
	var run string
	cmd := &cobra.Command{
		Use:   "test SUITE.yaml...",
		Short: "Run module test suites offline: each case's request through its module, the decision checked against the expected one",
		Long: `Runs ModuleTestSuite files (docs/authoring.md, "Test suites"). Each case sends a request to the
suite's module through the same calls and decisions as the API server makes and compares the
decision with the case's expect. Prints a line per case (and why a case failed), then a summary;
exits 1 when a case fails.`,
		Example: `  wasmkube module test examples/magic-validate/suite.yaml
  wasmkube module test examples/*/suite.yaml
  wasmkube module test -v --run 'update' examples/magic-validate/suite.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			only, err := regexp.Compile(run)
			if err != nil {
				return fmt.Errorf("--run %q: %w", run, err)
			}
			var cases, failed int
			for _, path := range args {
				suite, err := profiles.LoadTestSuite(path)
				if err != nil {
					return err
				}
				suite.Cases = slices.DeleteFunc(suite.Cases, func(c profiles.TestCase) bool { return !only.MatchString(c.Name) })
				if len(suite.Cases) == 0 {
					fmt.Fprintf(s.out, "%s: no case matches --run %q\n", path, run)
					continue
				}
				res, err := wasmkube.RunTestSuite(cmd.Context(), suite, wasmkube.TestSuiteOptions{BuiltinModules: examples.FS()})
				if err != nil {
					return err
				}
				printSuiteResult(s.out, path, res, verbose)
				cases += len(res.Cases)
				failed += res.Failed()
			}
			fmt.Fprintf(s.out, "%d suites, %d cases: %d passed, %d failed\n", len(args), cases, cases-failed, failed)
			if cases == 0 {
				return fmt.Errorf("no case matches --run %q", run)
			}
			if failed > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print every case's decision, not only those of failed cases")
	cmd.Flags().StringVar(&run, "run", "", "run only the cases whose name matches this regular expression")
	return cmd
}

// printSuiteResult prints a line per case: ok or FAIL, its name, and for a failed case (or with
// verbose, every case) the decision and what did not match, indented.
func printSuiteResult(w io.Writer, path string, res *wasmkube.SuiteResult, verbose bool) {
	fmt.Fprintf(w, "%s (%s)\n", path, res.Module)
	for _, c := range res.Cases {
		status := "ok  "
		if !c.Passed() {
			status = "FAIL"
		}
		fmt.Fprintf(w, "  %s %s\n", status, c.Name)
		if c.Passed() && !verbose {
			continue
		}
		fmt.Fprintf(w, "%s\n", indent("decision: "+c.Decision, "         "))
		for _, m := range c.Mismatches {
			fmt.Fprintf(w, "%s\n", indent(m, "         "))
		}
	}
}

func indent(text, prefix string) string {
	return prefix + strings.ReplaceAll(text, "\n", "\n"+prefix)
}
