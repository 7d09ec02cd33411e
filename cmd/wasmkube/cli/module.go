package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/hook"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/source"
)

func newModuleCommand(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "module",
		Short: "Make, run, test, inspect, benchmark and annotate WebAssembly modules offline",
	}
	cmd.AddCommand(newModuleNewCommand(s), newModuleRunCommand(s), newModuleTestCommand(s), newModuleInspectCommand(s), newModuleBenchCommand(s), newModuleAnnotateCommand(s), newModuleBuildRegoCommand(s), newModulePullCommand(s), newModulePushCommand(s))
	return cmd
}

// moduleFlags are the flags that load a module and build its request.
type moduleFlags struct {
	hook        string
	request     string
	settings    string
	mutating    bool
	timeout     time.Duration
	memoryLimit string
	// kind and mode select a Kubewarden policy (run only).
	kind string
	mode string
	// entrypoint is a Rego policy's entrypoint.
	entrypoint string
	// allowContextAware grants a Kubewarden policy what its metadata asks for.
	allowContextAware bool
}

func (f *moduleFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.hook, "hook", "", "authn | authz | validate (required)")
	fl.StringVar(&f.request, "request", "", "the review to send, JSON or YAML: a TokenReview (authn), SubjectAccessReview (authz) or AdmissionReview (validate); - for stdin")
	fl.StringVar(&f.settings, "settings", "", "the module's settings, a JSON or YAML file")
	fl.BoolVar(&f.mutating, "mutating", false, "treat the module as mutating (it may patch)")
	fl.DurationVar(&f.timeout, "timeout", wasm.DefaultTimeout, "call timeout")
	fl.StringVar(&f.memoryLimit, "memory-limit", "64Mi", "memory limit per instance")
	_ = cmd.MarkFlagRequired("hook")
}

func (f *moduleFlags) config(name string, isolation wasm.Isolation) (wasm.ModuleConfig, error) {
	mem, err := resource.ParseQuantity(f.memoryLimit)
	if err != nil {
		return wasm.ModuleConfig{}, fmt.Errorf("--memory-limit %q: %w", f.memoryLimit, err)
	}
	export, err := hookExport(f.hook)
	if err != nil {
		return wasm.ModuleConfig{}, err
	}
	return wasm.ModuleConfig{Name: name, Exports: []string{export}, Isolation: isolation, PoolSize: 1,
		Timeout: f.timeout, MemoryLimit: mem.Value()}, nil
}

func hookExport(hook string) (string, error) {
	switch hook {
	case "authn":
		return envelope.ExportAuthn, nil
	case "authz":
		return envelope.ExportAuthz, nil
	case "validate", "admission":
		return envelope.ExportValidate, nil
	}
	return "", fmt.Errorf("--hook %q: use authn, authz or validate", hook)
}

// readDoc reads a JSON or YAML file (or stdin for "-") as JSON.
func readDoc(path string, stdin io.Reader) ([]byte, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: not JSON or YAML: %w", path, err)
	}
	return j, nil
}

// runtimeForCLI is a module runtime with the compilation cache `up` uses, so a second run of the
// same module does not compile it again. As the server's, it serves both ABIs: any module may
// import the waPC host.
func runtimeForCLI(ctx context.Context) (*wasm.Runtime, error) {
	rt, err := wasm.NewRuntime(ctx, wasm.RuntimeConfig{CacheDir: wasmkube.ModuleCacheDir()})
	if err != nil {
		return nil, err
	}
	if err := kubewarden.DefineHosts(ctx, rt); err != nil {
		_ = rt.Close(context.Background())
		return nil, err
	}
	return rt, nil
}

// invocation is one prepared call of a hook: it asks the module and decides as the API server
// does, with the same functions (package hook).
type invocation struct {
	call func(ctx context.Context, m *wasm.Module) (answer any, decision string, err error)
	// secret is the bearer token of an authn request: never printed.
	secret string
}

// prepare reads the request and settings for the hook and returns the call that sends them.
func (f *moduleFlags) prepare(stdin io.Reader) (*invocation, error) {
	settings, raw, err := f.inputs(stdin)
	if err != nil {
		return nil, err
	}
	export, err := hookExport(f.hook)
	if err != nil {
		return nil, err
	}
	switch export {
	case envelope.ExportAuthn:
		return authnInvocation(raw, settings)
	case envelope.ExportAuthz:
		return authzInvocation(raw, settings)
	}
	return admissionInvocation(raw, settings, f.mutating)
}

// inputs reads --settings (optional) and --request as JSON.
func (f *moduleFlags) inputs(stdin io.Reader) (settings, request json.RawMessage, err error) {
	if f.settings != "" {
		if settings, err = readDoc(f.settings, stdin); err != nil {
			return nil, nil, fmt.Errorf("--settings: %w", err)
		}
	}
	if f.request == "" {
		return nil, nil, errors.New("--request is required: the review to send (see `wasmkube module run --help`)")
	}
	if request, err = readDoc(f.request, stdin); err != nil {
		return nil, nil, fmt.Errorf("--request: %w", err)
	}
	return settings, request, nil
}

func authnInvocation(raw, settings json.RawMessage) (*invocation, error) {
	var in authenticationv1.TokenReview
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("--request: not a TokenReview: %w", err)
	}
	return &invocation{secret: in.Spec.Token, call: func(ctx context.Context, m *wasm.Module) (any, string, error) {
		out, err := envelope.ReviewToken(ctx, m, settings, &in)
		if err != nil {
			return nil, "not authenticated: the module failed, the next authenticator is asked", err
		}
		out.Spec.Token = "" // a module written for the original ABI may echo it; never print it
		resp, ok, err := hook.DecideAuthn(m, out, in.Spec.Audiences)
		switch {
		case err != nil:
			return out, "", err
		case !ok:
			return out, "not authenticated: the next authenticator is asked", nil
		}
		u := resp.User
		return out, fmt.Sprintf("authenticated as %q (uid %q, groups %v, audiences %v)", u.GetName(), u.GetUID(), u.GetGroups(), resp.Audiences), nil
	}}, nil
}

func authzInvocation(raw, settings json.RawMessage) (*invocation, error) {
	var in authorizationv1.SubjectAccessReview
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("--request: not a SubjectAccessReview: %w", err)
	}
	return &invocation{call: func(ctx context.Context, m *wasm.Module) (any, string, error) {
		out, callErr := envelope.ReviewAccess(ctx, m, settings, &in)
		d, reason, err := hook.DecideAuthz(hook.AuthzModule{Module: hook.Module{Module: m, Settings: settings}}, out, callErr)
		decision := fmt.Sprintf("%s (reason %q)", hook.DecisionName(d), reason)
		if callErr != nil {
			return nil, decision + ": the module failed (failurePolicy NoOpinion)", callErr
		}
		if err != nil {
			// A deny stands even in an answer that breaks the contract; the server logs why.
			decision += fmt.Sprintf("\nnote: the answer breaks the ABI's contract: %v", err)
		}
		return out, decision, nil
	}}, nil
}

func admissionInvocation(raw, settings json.RawMessage, mutating bool) (*invocation, error) {
	var in admissionv1.AdmissionReview
	if err := json.Unmarshal(raw, &in); err != nil || in.Request == nil {
		return nil, fmt.Errorf("--request: not an AdmissionReview with a request: %v", err)
	}
	return &invocation{call: func(ctx context.Context, m *wasm.Module) (any, string, error) {
		out, err := envelope.Review(ctx, m, settings, &in)
		var res *admissionv1.AdmissionResponse
		if err == nil {
			res, err = envelope.CheckAdmission(m, in.Request, out, mutating)
		}
		am := hook.AdmissionModule{Admitter: hook.Envelope(hook.Module{Module: m, Settings: settings}), Mutating: mutating}
		d := hook.DecideAdmission(am, res, err)
		if out == nil {
			return nil, d.Describe(), d.Failure
		}
		return out, d.Describe(), d.Failure
	}}, nil
}

func moduleName(path string) string { return profiles.DefaultModuleName(path) }

// readModule reads the module a command names: a file, or a registry:// or oci:// reference
// (fetched into the module cache, as `up` does).
func readModule(ctx context.Context, ref string) ([]byte, error) {
	if !source.IsRemote(ref) {
		return os.ReadFile(ref)
	}
	m, err := source.New(source.Config{}).Fetch(ctx, ref, "")
	if err != nil {
		return nil, err
	}
	return m.Bytes, nil
}

// moduleRunLong is the help of `module run`, with its exit status.
const moduleRunLong = `Run a module once, offline, on the request in FILE (a TokenReview, SubjectAccessReview or
AdmissionReview, YAML or JSON; - reads stdin), and print the module's answer and the decision the
API server makes of it, with the same functions the server calls.

Exit status: 0 when the module answered, whatever it decided (allowed, denied, not
authenticated, NoOpinion: the decision line says which); 1 when it did not answer (a trap, a
timeout, a limit, an answer the host refuses: the decision line then shows what the failure
policy makes of that) or the input is bad. To check decisions in scripts and CI, write them in
a suite: 'wasmkube module test' exits 1 when a case decides otherwise.`

func newModuleRunCommand(s streams) *cobra.Command {
	var f moduleFlags
	var isolation string
	cmd := &cobra.Command{
		Use:   "run MODULE.wasm --hook authn|authz|validate --request FILE|- [--settings FILE] [--mutating]",
		Short: "Run a module once, offline, and show its answer and the API server's decision",
		Long:  moduleRunLong,
		Example: `  wasmkube module run examples/magic-validate/magic-validate.wasm --hook validate \
      --request examples/magic-validate/request.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			kubewarden, err := f.moduleType(s)
			if err != nil {
				return err
			}
			if kubewarden {
				return runPolicy(ctx, s, &f, args[0])
			}
			inv, err := f.prepare(s.in)
			if err != nil {
				return err
			}
			cfg, err := f.config(moduleName(args[0]), wasm.Isolation(isolation))
			if err != nil {
				return err
			}
			m, rt, err := loadModule(ctx, args[0], cfg)
			if err != nil {
				return err
			}
			defer rt.Close(context.Background())
			defer m.Close(context.Background())
			// A module may echo an authn request's token anywhere: it is redacted from all output.
			out, decision, err := inv.call(ctx, m)
			if out != nil {
				b, _ := json.MarshalIndent(out, "", "  ")
				fmt.Fprintf(s.out, "module answer:\n%s\n", envelope.RedactText(string(b), inv.secret))
			}
			if decision != "" {
				fmt.Fprintf(s.out, "decision: %s\n", envelope.RedactText(decision, inv.secret))
			}
			return envelope.RedactError(err, inv.secret)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&isolation, "isolation", "pooled", "pooled | fresh")
	cmd.Flags().StringVar(&f.kind, "type", typeEnvelope, "envelope (the original module ABI) | kubewarden (a Kubewarden policy; --hook validate)")
	cmd.Flags().StringVar(&f.mode, "execution-mode", "", "a Kubewarden policy's mode when its metadata names none: kubewarden-wapc | wasi | opa | gatekeeper")
	cmd.Flags().StringVar(&f.entrypoint, "entrypoint", "", "the entrypoint a Rego policy evaluates (default: gatekeeper's violation, else the first)")
	cmd.Flags().BoolVar(&f.allowContextAware, "allow-context-aware", false, "grant a Kubewarden policy what its metadata asks for (contextAwareResources, hostCapabilities); by default it gets nothing, as in a profile entry without grants (offline, Kubernetes reads fail anyway: there is no cluster)")
	return cmd
}

// benchModule measures a module of the envelope ABI, pooled then fresh.
func benchModule(ctx context.Context, s streams, f *moduleFlags, path string, calls, concurrency int) error {
	inv, err := f.prepare(s.in)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ISOLATION\tCALLS\tCALLS/S\tP50\tP99")
	var pooledP50 time.Duration
	for _, iso := range []wasm.Isolation{wasm.Pooled, wasm.Fresh} {
		cfg, err := f.config(moduleName(path), iso)
		if err != nil {
			return err
		}
		cfg.PoolSize = concurrency
		m, rt, err := loadModule(ctx, path, cfg)
		if err != nil {
			return err
		}
		n := calls
		if iso == wasm.Fresh {
			n = max(1, calls/20) // a fresh instance per call is slow; fewer calls suffice
		}
		res, err := wasm.Measure(n, concurrency, func() error { _, _, err := inv.call(ctx, m); return err })
		m.Close(context.Background())
		rt.Close(context.Background())
		if err != nil {
			return err
		}
		if iso == wasm.Pooled {
			pooledP50 = res.P50
		}
		fmt.Fprintf(w, "%s\t%d\t%.0f\t%s\t%s\n", iso, res.Calls, res.CallsPerSec, res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond))
		if iso == wasm.Fresh && pooledP50 > 0 {
			defer fmt.Fprintf(s.out, "pooled is %.0f× faster than fresh (p50)\n", float64(res.P50)/float64(pooledP50))
		}
	}
	return w.Flush()
}

// The module types of --type.
const (
	typeEnvelope   = "envelope"
	typeKubewarden = "kubewarden"
	// typeWASI is the old name of typeEnvelope: WASI is also one of Kubewarden's execution modes.
	typeWASI = "wasi"
)

// moduleType reads --type: true for a Kubewarden policy. The old name wasi is taken with a
// deprecation notice on stderr.
func (f *moduleFlags) moduleType(s streams) (kubewarden bool, err error) {
	switch f.kind {
	case typeKubewarden:
		return true, nil
	case typeEnvelope, "":
		return false, nil
	case typeWASI:
		fmt.Fprintln(s.err, "warning: --type wasi is deprecated: use --type envelope (the original module ABI)")
		return false, nil
	}
	return false, fmt.Errorf("--type %q: want envelope (the original module ABI) or kubewarden", f.kind)
}

// runPolicy runs a Kubewarden policy once, as `kwctl run` does: validate_settings, then
// validate with the AdmissionReview's request. There is no cluster: kubernetes host calls fail.
func runPolicy(ctx context.Context, s streams, f *moduleFlags, path string) error {
	p, rt, req, err := f.loadPolicy(ctx, s, path, wasm.Pooled, 1)
	if err != nil {
		return err
	}
	defer rt.Close(context.Background())
	defer p.Close(context.Background())
	mutating := f.mutating || p.Metadata().Mutating
	fmt.Fprintf(s.out, "policy: %s (%s, mutating %v), settings valid\n", p.Name(), p.Mode(), mutating)
	if ep := p.Entrypoint(); ep != "" {
		fmt.Fprintf(s.out, "rego: entrypoint %s, builtins on the host: %s\n", ep, orNone(p.RegoBuiltins()))
	}
	md := p.Metadata()
	if missing := md.Ungranted(p.Grants()); !missing.Empty() {
		fmt.Fprintf(s.out, "note: its metadata asks for %s; not granted (--allow-context-aware grants it)\n", describeGrants(missing))
	}
	res, err := p.Admit(ctx, &admissionv1.AdmissionReview{Request: req}, mutating)
	d := hook.DecideAdmission(hook.AdmissionModule{Admitter: p, Mutating: mutating}, res, err)
	fmt.Fprintf(s.out, "decision: %s\n", d.Describe())
	return d.Failure
}

// loadPolicy loads the Kubewarden policy at path with the flags' settings, limits and mode, and
// reads the request to send it.
func (f *moduleFlags) loadPolicy(ctx context.Context, s streams, path string, iso wasm.Isolation, poolSize int) (_ *kubewarden.Policy, _ *wasm.Runtime, _ *admissionv1.AdmissionRequest, err error) {
	if f.hook != "validate" {
		return nil, nil, nil, fmt.Errorf("--hook %q: Kubewarden policies answer admission requests; use --hook validate", f.hook)
	}
	var settings json.RawMessage
	if f.settings != "" {
		if settings, err = readDoc(f.settings, s.in); err != nil {
			return nil, nil, nil, fmt.Errorf("--settings: %w", err)
		}
	}
	if f.request == "" {
		return nil, nil, nil, errors.New("--request is required: an AdmissionReview")
	}
	raw, err := readDoc(f.request, s.in)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--request: %w", err)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(raw, &review); err != nil || review.Request == nil {
		return nil, nil, nil, fmt.Errorf("--request: not an AdmissionReview with a request: %v", err)
	}
	mem, err := resource.ParseQuantity(f.memoryLimit)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--memory-limit %q: %w", f.memoryLimit, err)
	}
	bin, err := readModule(ctx, path)
	if err != nil {
		return nil, nil, nil, err
	}
	rt, err := runtimeForCLI(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	var grants kubewarden.PolicyGrants
	if md, _, err := kubewarden.ReadMetadata(bin); err == nil && md != nil && f.allowContextAware {
		grants = kubewarden.PolicyGrants{ContextAwareResources: md.ContextAwareResources, HostCapabilities: md.HostCapabilities}
	}
	p, err := kubewarden.Load(ctx, rt, bin, kubewarden.PolicyConfig{
		Module:     wasm.ModuleConfig{Name: moduleName(path), Isolation: iso, PoolSize: poolSize, Timeout: f.timeout, MemoryLimit: mem.Value()},
		Mode:       kubewarden.ExecutionMode(f.mode),
		Entrypoint: f.entrypoint,
		Settings:   settings,
		Grants:     grants,
		Logger:     slog.New(slog.NewTextHandler(s.err, nil)),
	})
	if err != nil {
		rt.Close(context.Background())
		return nil, nil, nil, err
	}
	return p, rt, review.Request, nil
}

func loadModule(ctx context.Context, path string, cfg wasm.ModuleConfig) (*wasm.Module, *wasm.Runtime, error) {
	bin, err := readModule(ctx, path)
	if err != nil {
		return nil, nil, err
	}
	rt, err := runtimeForCLI(ctx)
	if err != nil {
		return nil, nil, err
	}
	m, err := rt.Load(ctx, bin, cfg)
	if err != nil {
		rt.Close(context.Background())
		return nil, nil, err
	}
	return m, rt, nil
}

// describeGrants names what g holds, e.g. "contextAwareResources networking.k8s.io/v1 Ingress".
func describeGrants(g kubewarden.PolicyGrants) string {
	var parts []string
	for _, r := range g.ContextAwareResources {
		parts = append(parts, "contextAwareResources "+r.APIVersion+" "+r.Kind)
	}
	if len(g.HostCapabilities) > 0 {
		parts = append(parts, "hostCapabilities "+strings.Join(g.HostCapabilities, ", "))
	}
	return strings.Join(parts, "; ")
}

// printMetadata shows what a Kubewarden policy's metadata makes of it.
func printMetadata(w io.Writer, md *kubewarden.Metadata) {
	mode := md.ExecutionMode
	if mode == "" {
		mode = kubewarden.ModeWAPC
	}
	fmt.Fprintf(w, "kubewarden:\t%s, mutating %v, %d rules\n", mode, md.Mutating, len(md.Rules))
	for _, r := range md.Rules {
		fmt.Fprintf(w, "kubewarden rule:\t%v %v/%v %v\n", r.Operations, r.APIGroups, r.APIVersions, r.Resources)
	}
	for _, c := range md.ContextAwareResources {
		fmt.Fprintf(w, "kubewarden context:\t%s %s\n", c.APIVersion, c.Kind)
	}
	if len(md.HostCapabilities) > 0 {
		fmt.Fprintf(w, "kubewarden capabilities:\t%s\n", strings.Join(md.HostCapabilities, ", "))
	}
}

func newModuleAnnotateCommand(s streams) *cobra.Command {
	var metadataPath, outPath string
	cmd := &cobra.Command{
		Use:   "annotate POLICY.wasm -m metadata.yml -o ANNOTATED.wasm",
		Short: "Write Kubewarden metadata into a policy (the role of kwctl annotate)",
		Long: `Writes metadata.yml (rules, mutating, executionMode, contextAwareResources, annotations…)
into the policy's io.kubewarden.metadata custom section, replacing one it had, so the policy can be
listed as type: kubewarden without further configuration.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bin, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			md, err := readMetadataFile(metadataPath)
			if err != nil {
				return err
			}
			out, err := kubewarden.Annotate(bin, md)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if err := os.WriteFile(outPath, out, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(s.out, "wrote %s (%d bytes, metadata from %s)\n", outPath, len(out), metadataPath)
			return nil
		},
	}
	cmd.Flags().StringVarP(&metadataPath, "metadata", "m", "", "the metadata file (YAML or JSON)")
	cmd.Flags().StringVarP(&outPath, "output", "o", "", "where to write the annotated policy (may be POLICY.wasm itself)")
	_ = cmd.MarkFlagRequired("metadata")
	_ = cmd.MarkFlagRequired("output")
	return cmd
}

func newModuleInspectCommand(s streams) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect MODULE.wasm",
		Short: "Show a module's exports, detected ABIs, size, imports and custom sections",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bin, err := readModule(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			info, err := wasm.Inspect(cmd.Context(), bin)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			w := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "file:\t%s\nsize:\t%d bytes\nsha256:\t%s\n", args[0], info.Size, info.SHA256)
			fmt.Fprintf(w, "memory:\t%d pages (%d KiB) at start\n", info.MemoryMinPages, info.MemoryMinPages*64)
			if mt := info.Metering; mt != nil {
				fmt.Fprintf(w, "sandbox:\tmetered: %d functions (%d pay at entry), %d loops, %d bulk instructions; largest frame estimate %d KiB\n",
					mt.Functions, mt.EntryCharges, mt.Loops, mt.BulkCharges, mt.MaxFrame>>10)
			} else {
				fmt.Fprintf(w, "sandbox:\trefused, the module would not load: %s\n", info.Refused)
			}
			for _, a := range info.ABIs {
				fmt.Fprintf(w, "abi:\t%s\n", a)
			}
			for _, e := range info.Exports {
				fmt.Fprintf(w, "export:\t%s(%s) -> (%s)\n", e.Name, strings.Join(e.Params, ", "), strings.Join(e.Results, ", "))
			}
			for _, i := range info.Imports {
				fmt.Fprintf(w, "import:\t%s.%s(%s) -> (%s)\n", i.Module, i.Name, strings.Join(i.Params, ", "), strings.Join(i.Results, ", "))
			}
			for _, c := range info.CustomSections {
				fmt.Fprintf(w, "custom section:\t%s (%d bytes)\n", c.Name, c.Size)
			}
			if md, found, err := kubewarden.ReadMetadata(bin); found {
				if err != nil {
					fmt.Fprintf(w, "kubewarden:\tmetadata unreadable: %v\n", err)
				} else {
					printMetadata(w, md)
				}
			}
			printRego(cmd.Context(), w, bin, info)
			return w.Flush()
		},
	}
}

func newModuleBenchCommand(s streams) *cobra.Command {
	var (
		f           moduleFlags
		calls       int
		concurrency int
	)
	cmd := &cobra.Command{
		Use:   "bench MODULE.wasm --hook … --request FILE [--calls N] [--concurrency C]",
		Short: "Measure calls/s and p50/p99 latency, pooled vs fresh instances",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			kubewarden, err := f.moduleType(s)
			if err != nil {
				return err
			}
			if kubewarden {
				return benchPolicy(ctx, s, &f, args[0], calls, concurrency)
			}
			return benchModule(ctx, s, &f, args[0], calls, concurrency)
		},
	}
	f.add(cmd)
	cmd.Flags().IntVar(&calls, "calls", 2000, "calls per pooled run (fresh runs 1/20 of them)")
	cmd.Flags().IntVar(&concurrency, "concurrency", 1, "concurrent callers (and pool size)")
	cmd.Flags().StringVar(&f.kind, "type", typeEnvelope, "envelope (the original module ABI) | kubewarden")
	cmd.Flags().StringVar(&f.mode, "execution-mode", "", "a Kubewarden policy's mode when its metadata names none")
	cmd.Flags().StringVar(&f.entrypoint, "entrypoint", "", "the entrypoint a Rego policy evaluates (default: gatekeeper's violation, else the first)")
	cmd.Flags().BoolVar(&f.allowContextAware, "allow-context-aware", false, "grant a Kubewarden policy what its metadata asks for")
	return cmd
}

// benchPolicy measures a Kubewarden policy like `kwctl bench`: pooled and fresh instances for
// waPC policies, fresh only for WASI-mode ones (a command runs once per instance).
func benchPolicy(ctx context.Context, s streams, f *moduleFlags, path string, calls, concurrency int) error {
	w := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ISOLATION\tCALLS\tCALLS/S\tP50\tP99")
	for _, iso := range []wasm.Isolation{wasm.Pooled, wasm.Fresh} {
		p, rt, req, err := f.loadPolicy(ctx, s, path, iso, concurrency)
		if err != nil {
			return err
		}
		if p.Mode() == kubewarden.ModeWASI && iso == wasm.Pooled {
			fmt.Fprintln(w, "pooled\t-\t-\t-\t- (a WASI-mode policy gets a fresh instance per call)")
			p.Close(context.Background())
			rt.Close(context.Background())
			continue
		}
		n := calls
		if iso == wasm.Fresh {
			n = max(1, calls/20)
		}
		mutating := f.mutating || p.Metadata().Mutating
		res, err := wasm.Measure(n, concurrency, func() error { _, err := p.Admit(ctx, &admissionv1.AdmissionReview{Request: req}, mutating); return err })
		p.Close(context.Background())
		rt.Close(context.Background())
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\t%d\t%.0f\t%s\t%s\n", iso, res.Calls, res.CallsPerSec, res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond))
	}
	return w.Flush()
}

// orNone joins names with ", ", or says none.
func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// printRego lists a Rego policy's entrypoints and the builtins it calls on the host.
func printRego(ctx context.Context, w io.Writer, bin []byte, info *wasm.Info) {
	if !slices.ContainsFunc(info.ABIs, func(a string) bool { return strings.HasPrefix(a, "OPA wasm ABI") }) {
		return
	}
	rt, err := runtimeForCLI(ctx)
	if err != nil {
		fmt.Fprintf(w, "rego:	%v\n", err)
		return
	}
	defer rt.Close(context.Background())
	p, err := kubewarden.Load(ctx, rt, bin, kubewarden.PolicyConfig{Module: wasm.ModuleConfig{Name: "inspect", PoolSize: 1}, Mode: kubewarden.ModeOPA})
	if err != nil {
		fmt.Fprintf(w, "rego:	does not load: %v\n", err)
		return
	}
	defer p.Close(context.Background())
	fmt.Fprintf(w, "rego entrypoints:\t%s\n", strings.Join(p.RegoEntrypoints(), ", "))
	fmt.Fprintf(w, "rego builtins on the host:\t%s\n", orNone(p.RegoBuiltins()))
}
