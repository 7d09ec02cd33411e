package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/wasmkube/wasmkube/apiserver"
	"github.com/wasmkube/wasmkube/wasm/hook"
)

type decisionsOptions struct {
	profileFlags
	follow     bool
	module     string
	output     string
	kubeconfig string
}

func newDecisionsCommand(s streams) *cobra.Command {
	o := &decisionsOptions{}
	cmd := &cobra.Command{
		Use:   "decisions",
		Short: "Show the modules' latest decisions, or follow them as they happen",
		Long: `Show what the modules of a running cluster decided: time, module, hook, operation, resource,
namespace/name, user, result (allowed, denied, mutated, authenticated, unauthenticated, no-opinion,
failed), latency and message. The server keeps the latest ` + fmt.Sprint(hook.DefaultDecisionLogSize) + ` decisions; -f then prints new
ones as they happen, until Ctrl-C. Decisions served from a cache (authentication, authorization)
asked no module and are not shown. Tokens and object contents are never shown; a message about
a Secret has the Secret's values redacted.

The log is served at ` + hook.DecisionsPath + ` behind the API server's authentication and authorization:
the profile's admin kubeconfig may read it, other users need a role granting get on that
non-resource URL.`,
		Example: `  wasmkube decisions -f                         # the demo cluster's, as they happen
  wasmkube decisions --module magic-validate -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), s) },
	}
	o.add(cmd)
	f := cmd.Flags()
	f.BoolVarP(&o.follow, "follow", "f", false, "print new decisions as they happen, until Ctrl-C")
	f.StringVar(&o.module, "module", "", "only this module's decisions")
	f.StringVarP(&o.output, "output", "o", "table", "table, or json (one JSON object per line)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig to use (default: the profile's)")
	return cmd
}

func (o *decisionsOptions) run(ctx context.Context, s streams) error {
	if o.output != "table" && o.output != "json" {
		return fmt.Errorf("--output %q: want table or json", o.output)
	}
	path := o.kubeconfig
	if path == "" {
		p, dataDir, err := o.resolve()
		if err != nil {
			return err
		}
		path = apiserver.Layout{DataDir: dataDir}.Kubeconfig()
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("profile %s has no kubeconfig yet (%s): start it with `wasmkube up --profile %s`", p.Name, path, profileRef(p))
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	req := cs.CoreV1().RESTClient().Get().AbsPath(hook.DecisionsPath)
	if o.follow {
		req = req.Param("follow", "true")
	}
	if o.module != "" {
		req = req.Param("module", o.module)
	}
	body, err := req.Stream(ctx)
	switch {
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w: reading the decision log needs the admin's kubeconfig (the profile's) or a role granting get on the non-resource URL %s", err, hook.DecisionsPath)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("the server at %s has no decision log (%s): is it a wasmkube cluster of this version?", cfg.Host, hook.DecisionsPath)
	case err != nil:
		return fmt.Errorf("read the decisions from %s: %w", cfg.Host, err)
	}
	defer body.Close()
	if err := o.print(s, body); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// print copies the decisions as they arrive: JSON lines as they are, or a table line each.
func (o *decisionsOptions) print(s streams, body io.Reader) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	if o.output == "table" {
		fmt.Fprintln(s.out, decisionHeader)
	}
	for sc.Scan() {
		if o.output == "json" {
			fmt.Fprintln(s.out, sc.Text())
			continue
		}
		var d hook.Decision
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			return fmt.Errorf("a decision the server sent does not decode: %w", err)
		}
		fmt.Fprintln(s.out, decisionRow(d))
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

const decisionColumns = "%-12s  %-16s  %-22s  %-12s  %-24s  %-30s  %-20s  %-15s  %8s  %s"

var decisionHeader = fmt.Sprintf(decisionColumns, "TIME", "MODULE", "HOOK", "OPERATION", "RESOURCE", "NAMESPACE/NAME", "USER", "RESULT", "LATENCY", "MESSAGE")

func decisionRow(d hook.Decision) string {
	object := d.Name
	if d.Namespace != "" && d.Name != "" {
		object = d.Namespace + "/" + d.Name
	} else if d.Namespace != "" {
		object = d.Namespace
	}
	latency := (time.Duration(d.LatencyMicros) * time.Microsecond).String()
	return strings.TrimRight(fmt.Sprintf(decisionColumns, d.Time.Local().Format("15:04:05.000"), d.Module, d.Hook, d.Operation,
		d.Resource, object, d.User, d.Result, latency, strings.ReplaceAll(d.Message, "\n", " ")), " ")
}
