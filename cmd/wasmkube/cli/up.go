package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/apiserver/kubeconfig"
	"github.com/wasmkube/wasmkube/apiserver/nodes"
	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
)

// StopTimeout bounds a clean shutdown after SIGINT/SIGTERM.
const StopTimeout = 30 * time.Second

type upOptions struct {
	profileFlags
	address         string
	port            int32
	apiserverArgs   []string
	mergeKubeconfig bool
	dryRun          bool
	newCA           bool
	timeout         time.Duration
	trace           string
}

func newUpCommand(s streams) *cobra.Command {
	o := &upOptions{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the cluster a profile describes and run it until Ctrl-C",
		Long: `Start embedded etcd, kube-apiserver and kube-controller-manager as the profile says, wait until
the API server is ready, write the kubeconfig and keep running until SIGINT or SIGTERM, then stop
cleanly and keep the data for the next start.`,
		Example: `  wasmkube up                                  # the demo profile on https://127.0.0.1:6443
  wasmkube up --profile minimal --port 0       # no controllers, a free port
  wasmkube up --apiserver-arg v=2 --dry-run    # print the plan without starting`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("port") {
				o.port = -1
			}
			return o.run(cmd.Context(), s)
		},
	}
	o.add(cmd)
	f := cmd.Flags()
	f.StringVar(&o.address, "address", "", "IP address to listen on (default: the profile's, else 127.0.0.1)")
	f.Int32Var(&o.port, "port", 0, "secure port (default: the profile's, else 6443); 0 picks a free port")
	f.StringArrayVar(&o.apiserverArgs, "apiserver-arg", nil, `extra kube-apiserver flag as name=value (repeatable), e.g. --apiserver-arg v=2`)
	f.BoolVar(&o.mergeKubeconfig, "merge-kubeconfig", false, "also merge the context wasmkube-NAME into your kubeconfig ($KUBECONFIG or ~/.kube/config) and make it current")
	f.BoolVar(&o.dryRun, "dry-run", false, "print what would run (flags, files) and exit")
	f.BoolVar(&o.newCA, "new-ca", false, "if the data dir holds cluster data but its CA or service-account key is lost, issue new ones (credentials issued before stop working)")
	f.DurationVar(&o.timeout, "timeout", wasmkube.DefaultReadyTimeout, "how long to wait for the API server to become ready")
	f.StringVar(&o.trace, "trace", "", "write a start-up trace to FILE (when each phase ended, tab-separated) and a CPU profile of the start-up to FILE.cpu.pprof (go tool pprof)")
	return cmd
}

func (o *upOptions) libraryOptions(dataDir string) wasmkube.Options {
	opts := wasmkube.Options{BuiltinModules: examples.FS(), DataDir: dataDir, Address: o.address, APIServerArgs: o.apiserverArgs, ReadyTimeout: o.timeout, NewCA: o.newCA}
	if o.port >= 0 {
		opts.Port = &o.port
	}
	return opts
}

func (o *upOptions) run(ctx context.Context, s streams) error {
	p, dataDir, err := o.resolve()
	if err != nil {
		return err
	}
	opts := o.libraryOptions(dataDir)
	// The module files and granted directories, for --dry-run too and before anything starts.
	if err := wasmkube.CheckModuleFiles(p, opts); err != nil {
		return err
	}
	if o.dryRun {
		plan, err := wasmkube.PlanFor(p, opts)
		if err != nil {
			return err
		}
		return printPlan(s, plan, p.Source)
	}
	began := time.Now()
	fmt.Fprintf(s.out, "Starting profile %s (%s), data in %s\n", p.Name, p.Source, dataDir)
	for _, d := range p.Deprecations() {
		fmt.Fprintf(s.err, "warning: profile %s: %s\n", p.Name, d)
	}
	opts.Progress = printStep(s)
	endTrace, err := o.startTrace(&opts)
	if err != nil {
		return err
	}
	// SIGHUP (`wasmkube reload`) is caught from now on: one that arrives while the cluster starts
	// reloads it once it is ready, rather than ending the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	c, err := wasmkube.Up(ctx, p, opts)
	if err != nil {
		_ = endTrace()
		return err
	}
	// Start-up leaves much garbage (OpenAPI specs, discovery); hand it back to the OS now
	// rather than keep a peak-sized heap for the life of an idle playground.
	debug.FreeOSMemory()
	opts.Trace.Mark("memory returned to the OS", "")
	if err := endTrace(); err != nil {
		fmt.Fprintf(s.err, "warning: %v\n", err)
	}
	o.printReady(s, p, c, began)
	stopWatching := o.watch(ctx, s, p, c, dataDir, hup)
	defer stopWatching()
	fmt.Fprintln(s.out, "Press Ctrl-C to stop (data is kept).")
	return runUntilStopped(ctx, s, c, dataDir)
}

// watch reloads the cluster's modules when its profile or module files change and on SIGHUP
// (`wasmkube reload`), printing each outcome, until the returned function is called.
func (o *upOptions) watch(ctx context.Context, s streams, p *profiles.Loaded, c *wasmkube.Cluster, dataDir string, hup <-chan os.Signal) (stop func()) {
	r := &reloadReporter{s: s, dataDir: dataDir}
	r.ready()
	stop = watchProfile(ctx, s, p, o.profile, c.NewWatcher, hup, r.report)
	if p.IsBuiltin() {
		fmt.Fprintf(s.out, "  reload: wasmkube reload --profile %s\n", p.Name)
	} else {
		fmt.Fprintf(s.out, "  reload: on any change to %s or its module files (or: wasmkube reload --profile %s)\n", p.Source, p.Source)
	}
	return stop
}

// watchProfile runs the watcher newWatcher makes for profile p (named ref on the command line)
// with report, reloading on each SIGHUP too, until the returned function is called.
func watchProfile(ctx context.Context, s streams, p *profiles.Loaded, ref string, newWatcher func(func() (*profiles.Loaded, error)) (*wasmkube.Watcher, error),
	hup <-chan os.Signal, report func(wasmkube.ReloadReport)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	reload := forwardHangups(ctx, hup)
	load := func() (*profiles.Loaded, error) {
		if p.IsBuiltin() {
			return wasmkube.ResolveProfile(ref)
		}
		return profiles.LoadFile(p.Source)
	}
	done := make(chan struct{})
	w, err := newWatcher(load)
	if err != nil {
		fmt.Fprintf(s.err, "warning: %v: changes to the profile will not reload it\n", err)
		close(done)
	} else {
		go func() {
			defer close(done)
			defer w.Close()
			_ = w.Run(ctx, reload, report)
		}()
	}
	return func() {
		cancel()
		<-done
	}
}

// startTrace starts the CPU profile and the trace of `up --trace FILE` (a no-op without it);
// the returned function stops the profile and writes the trace to FILE and the profile to
// FILE.cpu.pprof.
func (o *upOptions) startTrace(opts *wasmkube.Options) (func() error, error) {
	if o.trace == "" {
		return func() error { return nil }, nil
	}
	opts.Trace = wasmkube.NewTrace()
	profile, err := os.OpenFile(o.trace+".cpu.pprof", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--trace: %w", err)
	}
	if err := pprof.StartCPUProfile(profile); err != nil {
		_ = profile.Close()
		return nil, fmt.Errorf("--trace: CPU profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := profile.Close(); err != nil {
			return fmt.Errorf("--trace: %w", err)
		}
		var buf bytes.Buffer
		if _, err := opts.Trace.WriteTo(&buf); err != nil {
			return fmt.Errorf("--trace: %w", err)
		}
		if err := os.WriteFile(o.trace, buf.Bytes(), 0o600); err != nil {
			return fmt.Errorf("--trace: %w", err)
		}
		return nil
	}, nil
}

// printStep prints each start-up step as it completes.
func printStep(s streams) func(wasmkube.Step) {
	return func(st wasmkube.Step) {
		detail := ""
		if st.Detail != "" {
			detail = " " + st.Detail
		}
		state := "ready"
		if st.Name == "controllers" || st.Name == "scheduler" {
			state = "started"
		}
		fmt.Fprintf(s.out, "  ✓ %s %s (%.1fs)%s\n", st.Name, state, st.Duration.Seconds(), detail)
	}
}

// printReady says where the cluster is and merges its context into the user's kubeconfig when
// asked (a failure to merge is a warning).
func (o *upOptions) printReady(s streams, p *profiles.Loaded, c *wasmkube.Cluster, began time.Time) {
	fmt.Fprintf(s.out, "Ready in %.1fs: %s\n", time.Since(began).Seconds(), c.Server)
	fmt.Fprintf(s.out, "  kubeconfig: %s   (context %s)\n", c.KubeconfigPath, p.ContextName())
	fmt.Fprintf(s.out, "  export KUBECONFIG=%s   # or: wasmkube kubectl --profile %s get ns\n", c.KubeconfigPath, profileRef(p))
	if !o.mergeKubeconfig {
		return
	}
	written, err := kubeconfig.Merge(kubeconfig.UserConfigAccess(), c.Kubeconfig, p.ContextName())
	if err != nil {
		fmt.Fprintf(s.err, "warning: %v\n", err)
		return
	}
	fmt.Fprintf(s.out, "  merged into %s; current context is now %s (kubectl --context %s …)\n", written, p.ContextName(), p.ContextName())
}

// profileRef is what --profile takes to find p again from any directory: the name of a
// built-in profile or of one in the user profile directory, else the file's absolute path.
func profileRef(p *profiles.Loaded) string {
	if p.IsBuiltin() {
		return p.Name
	}
	// The user profile directory's NAME.yaml is found by NAME (profiles.Finder).
	if dir, file := filepath.Split(p.Source); filepath.Clean(dir) == filepath.Clean(wasmkube.UserProfileDir()) && strings.HasSuffix(file, ".yaml") {
		return strings.TrimSuffix(file, ".yaml")
	}
	return p.Source
}

// runUntilStopped waits for ctx (SIGINT, SIGTERM) and stops the cluster cleanly, or returns
// why the cluster stopped on its own.
func runUntilStopped(ctx context.Context, s streams, c *wasmkube.Cluster, dataDir string) error {
	select {
	case <-ctx.Done():
	case <-c.Done():
		return fmt.Errorf("cluster %s stopped: %w", c.Name, c.Wait())
	}
	fmt.Fprintln(s.out, "Stopping…")
	stopBegan := time.Now()
	stopCtx, cancel := context.WithTimeout(context.Background(), StopTimeout)
	defer cancel()
	if err := c.Stop(stopCtx); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	fmt.Fprintf(s.out, "  ✓ stopped (%.1fs); data kept in %s\n", time.Since(stopBegan).Seconds(), dataDir)
	return nil
}

// planView is what --dry-run prints.
type planView struct {
	Profile               string   `json:"profile"`
	Source                string   `json:"source"`
	DataDir               string   `json:"dataDir"`
	Server                string   `json:"server"`
	Kubeconfig            string   `json:"kubeconfig"`
	Etcd                  []string `json:"etcd"`
	EtcdFsync             *bool    `json:"etcdFsync,omitempty"`
	APIServerArgs         []string `json:"kubeAPIServerArgs"`
	ControllerManagerArgs []string `json:"kubeControllerManagerArgs,omitempty"`
	SchedulerArgs         []string `json:"kubeSchedulerArgs,omitempty"`
	Nodes                 []string `json:"nodes,omitempty"`
	Modules               any      `json:"modules"`
}

// nodeLines describes each simulated node in a line.
func nodeLines(spec *nodes.Spec) []string {
	if spec == nil {
		return nil
	}
	var out []string
	for _, name := range spec.Names() {
		out = append(out, fmt.Sprintf("%s: cpu %s, memory %s, pods %d (kwok)", name, spec.CPU.String(), spec.Memory.String(), spec.Pods))
	}
	return out
}

func printPlan(s streams, plan *wasmkube.Plan, source string) error {
	server := plan.Server()
	if plan.Port == 0 {
		server = strings.TrimSuffix(server, ":0") + ":<free port>"
	}
	var fsync *bool
	if plan.ExternalEtcd == nil { // the embedded etcd's only; an external one syncs as configured
		fsync = &plan.EtcdFsync
	}
	out, err := yaml.Marshal(planView{
		EtcdFsync: fsync,
		Profile:   plan.Name, Source: source, DataDir: plan.Layout.DataDir, Server: server,
		Kubeconfig: plan.Layout.Kubeconfig(), Etcd: plan.EtcdServers,
		APIServerArgs: plan.APIServerArgs, ControllerManagerArgs: plan.ControllerManagerArgs,
		SchedulerArgs: plan.SchedulerArgs, Nodes: nodeLines(plan.Nodes),
		Modules: plan.Modules,
	})
	if err != nil {
		return err
	}
	_, err = s.out.Write(out)
	return err
}
