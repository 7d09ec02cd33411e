package wasmkube

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"

	"github.com/wasmkube/wasmkube/apiserver"
	"github.com/wasmkube/wasmkube/apiserver/kubeconfig"
	"github.com/wasmkube/wasmkube/apiserver/nodes"
	"github.com/wasmkube/wasmkube/apiserver/pki"
	"github.com/wasmkube/wasmkube/datadir"
	"github.com/wasmkube/wasmkube/etcd"
	"github.com/wasmkube/wasmkube/internal/lifecycle"
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm/hook"
	"github.com/wasmkube/wasmkube/wasm/source"
)

// DefaultReadyTimeout bounds how long Up waits for the kube-apiserver to become ready.
const DefaultReadyTimeout = 2 * time.Minute

// Options adjust one Up call; zero values mean "as the profile says".
type Options struct {
	// DataDir overrides the profile's data directory.
	DataDir string
	// Address and Port override the profile's listen address and port (Port 0: a free port).
	Address string
	Port    *int32
	// APIServerArgs are extra kube-apiserver flags ("name=value"); they override the profile's.
	APIServerArgs []string
	// ReadyTimeout bounds the wait for /readyz; DefaultReadyTimeout when zero.
	ReadyTimeout time.Duration
	// Progress, when set, is told about each step as it completes.
	Progress func(Step)
	// LogOutput receives the Kubernetes components' logs. Default: DATADIR/logs/kube.log.
	// Kubernetes logging is process-global: only the first cluster of a process sets it.
	LogOutput io.Writer
	// Hooks plug into the kube-apiserver's construction.
	Hooks apiserver.Hooks
	// ModuleCacheDir keeps compiled modules; ModuleCacheDir() when empty.
	ModuleCacheDir string
	// BuiltinModules holds the modules a profile names as builtin:NAME, as NAME/NAME.wasm files
	// (the layout of package examples' FS, which the wasmkube command passes). Without it a
	// profile naming a built-in module is refused with an error saying so.
	BuiltinModules fs.FS
	// ModuleFetcher fetches the https://, registry:// and oci:// modules a profile names, and
	// caches them; a Fetcher of source.DefaultCacheDir() when nil.
	ModuleFetcher *source.Fetcher
	// NewCA lets Up replace a lost CA or service-account key of a data dir that holds cluster
	// data (`up --new-ca`). Without it that is an error: credentials issued before stop working.
	NewCA bool
	// Trace, when set, records when each start-up phase ends (`wasmkube up --trace`).
	Trace *Trace
}

// Step reports one completed start-up step.
type Step struct {
	// Name is one of "data" (only when an older wasmkube's data dir is adopted), "pki", "etcd",
	// "modules", "kube-apiserver", "controllers".
	Name     string
	Duration time.Duration
	// Detail says more, e.g. "external" for etcd.
	Detail string
}

// Cluster is a running wasmkube cluster.
type Cluster struct {
	// Name is the profile's name.
	Name string
	// DataDir holds the cluster's PKI, etcd data, kubeconfig and logs.
	DataDir string
	// Server is the kube-apiserver's URL.
	Server string
	// KubeconfigPath is the admin kubeconfig written for this cluster (0600).
	KubeconfigPath string
	// Kubeconfig is the same kubeconfig in memory; context, cluster and user are wasmkube-NAME.
	Kubeconfig *clientcmdapi.Config
	// RESTConfig is a client configuration for the admin user (group system:masters).
	RESTConfig *rest.Config
	// Plan is what was run.
	Plan *Plan

	life    *lifecycle.Stopper
	etcdErr <-chan error
	reload  *reloadState
}

// moduleReader reads the modules the options give access to. The default fetcher logs through
// klog, as the cluster does.
func (o Options) moduleReader() moduleReader {
	f := o.ModuleFetcher
	if f == nil {
		f = source.New(source.Config{Logger: slog.New(logr.ToSlogHandler(klog.Background()))})
	}
	return moduleReader{builtin: o.BuiltinModules, remote: f}
}

// Up starts the cluster a profile describes and returns when it is ready: /readyz answers ok,
// the default namespace exists, the controllers and the scheduler run, the simulated nodes are
// Ready and the kubeconfig is written.
//
// # Notes
//
//   - ctx bounds the start-up only: cancelling it while Up runs rolls the start back; after Up
//     returns, the cluster runs until Stop.
//   - A data directory is used by one cluster at a time (a lock file); a second Up on it fails.
//   - The data directory must be missing, empty, or wasmkube's (package datadir: a marker, or the
//     layout of a wasmkube before the marker); anything else is refused before a file is written.
//   - A data directory whose etcd holds data but whose CA or service-account key is lost is
//     refused unless opts.NewCA.
//   - On any failure, what already started is stopped again before Up returns.
//   - Kubernetes keeps process-global state: run one cluster per process at a time. Stopping a
//     cluster and starting another (or the same data dir again) in one process works.
func Up(ctx context.Context, p *profiles.Loaded, opts Options) (*Cluster, error) {
	plan, err := PlanFor(p, opts)
	if err != nil {
		return nil, err
	}
	// One reader for the check and the load: a tag asked of a registry is asked once.
	modules := opts.moduleReader()
	// Before anything starts: a policy asking for more than it is granted is a profile error.
	if err := checkGrants(ctx, modules, p, plan.Modules); err != nil {
		return nil, err
	}
	s := &starting{p: p, opts: opts, plan: plan, modules: modules,
		c: &Cluster{Name: p.Name, DataDir: plan.Layout.DataDir, life: lifecycle.New()}}
	progress := opts.Progress
	if progress == nil {
		progress = func(Step) {}
	}
	opts.Trace.Mark("plan", "")
	if err := runSteps(ctx, s.steps(), progress, opts.Trace, s.c.onStop); err != nil {
		return nil, err
	}
	c := s.c
	c.Server, c.KubeconfigPath, c.Kubeconfig, c.RESTConfig, c.Plan = s.plan.Server(), s.plan.Layout.Kubeconfig(), s.own, s.restConfig, s.plan
	c.reload = &reloadState{mods: s.mods, opts: opts, plan: plan}
	go c.watch("kube-apiserver", s.api)
	if s.cm != nil {
		go c.watch("kube-controller-manager", s.cm)
	}
	if s.sched != nil {
		go c.watch("kube-scheduler", s.sched)
	}
	if c.etcdErr != nil {
		go c.watchEtcd()
	}
	return c, nil
}

// step is one step of Up, as kind's create actions: run does it and says whether and with what
// detail it is reported (Options.Progress, under name); rollback, when set, undoes a completed
// step: when a later step fails, and when the cluster stops.
type step struct {
	name     string
	run      func(ctx context.Context) (report bool, detail string, err error)
	rollback func() error
}

// runSteps runs the steps in order and reports each (and marks its end in the trace). When one
// fails, the completed steps are rolled back newest first; when all succeed, their rollbacks are
// handed to onStop in order.
func runSteps(ctx context.Context, steps []step, progress func(Step), trace *Trace, onStop func(func() error)) error {
	var done []step
	for _, st := range steps {
		start := time.Now()
		report, detail, err := st.run(ctx)
		if err != nil {
			for i := len(done) - 1; i >= 0; i-- {
				if done[i].rollback != nil {
					_ = done[i].rollback()
				}
			}
			return err
		}
		done = append(done, st)
		if !report {
			detail = ""
		}
		trace.Mark(st.name, detail)
		if report {
			progress(Step{Name: st.name, Duration: time.Since(start), Detail: detail})
		}
	}
	for _, st := range done {
		if st.rollback != nil {
			onStop(st.rollback)
		}
	}
	return nil
}

// starting is one Up in progress: what its steps share.
type starting struct {
	p    *profiles.Loaded
	opts Options
	plan *Plan
	c    *Cluster

	unlock     func() error
	bundle     *pki.Bundle
	ln         net.Listener
	etcd       *etcd.Server
	own        *clientcmdapi.Config
	restConfig *rest.Config
	mods       *clusterModules
	modules    moduleReader
	ext        apiserver.Extensions
	adm        *hook.Admission
	api        *apiserver.APIServer
	cm         *apiserver.ControllerManager
	sched      *apiserver.Scheduler
	sim        *nodes.Simulator
	// bootstrapped: the embedded etcd held this Kubernetes version's bootstrap objects before
	// this start (see waitReady).
	bootstrapped bool
}

// steps are Up's steps in order; the names reported are those of Step.Name.
func (s *starting) steps() []step {
	return []step{
		{name: "data", run: s.prepareDataDir, rollback: func() error { return s.unlock() }},
		{name: "pki", run: s.ensurePKI},
		// The listener is a no-op to close once the server owns it.
		{name: "listen", run: s.listen, rollback: func() error { _ = s.ln.Close(); return nil }},
		{name: "etcd", run: s.startEtcd, rollback: s.stopEtcd},
		{name: "admin client", run: s.adminClient},
		{name: "modules", run: s.loadModules, rollback: s.closeModules},
		{name: "kube-apiserver", run: s.startAPIServer, rollback: func() error { return s.api.Stop() }},
		{name: "controllers", run: s.startControllers, rollback: s.stopControllers},
		{name: "scheduler", run: s.startScheduler, rollback: s.stopScheduler},
		{name: "nodes", run: s.startNodes, rollback: s.stopNodes},
		{name: "kubeconfig", run: s.writeKubeconfig},
	}
}

// prepareDataDir checks or creates the data dir and locks it; an adopted older one is reported.
func (s *starting) prepareDataDir(context.Context) (bool, string, error) {
	state, err := datadir.Prepare(s.plan.Layout.DataDir, Version())
	if err != nil {
		return false, "", err
	}
	if s.unlock, err = lockDataDir(s.plan.Layout, s.p.Name); err != nil {
		return false, "", err
	}
	return state == datadir.Adopted, "written by an older wasmkube: adopted, " + datadir.MarkerName + " added", nil
}

func (s *starting) ensurePKI(context.Context) (bool, string, error) {
	bundle, detail, err := ensurePKI(s.plan.Plan, s.opts.NewCA)
	s.bundle = bundle
	return true, detail, err
}

// listen opens the secure port; the plan then names the port bound.
func (s *starting) listen(context.Context) (bool, string, error) {
	ln, err := apiserver.Listen(s.plan.Address, s.plan.Port)
	if err != nil {
		return false, "", err
	}
	s.ln = ln
	bound := *s.plan
	bound.Plan = s.plan.WithPort(int32(ln.Addr().(*net.TCPAddr).Port))
	s.plan = &bound
	return false, "", nil
}

func (s *starting) startEtcd(ctx context.Context) (bool, string, error) {
	s.bootstrapped = bootstrapRecorded(s.plan.Plan)
	srv, err := startEtcd(ctx, s.plan.Plan, s.opts.Trace)
	if err != nil {
		return false, "", err
	}
	if srv == nil {
		return true, "external " + strings.Join(s.plan.EtcdServers, ","), nil
	}
	s.etcd, s.c.etcdErr = srv, srv.Err()
	return true, "embedded", nil
}

func (s *starting) stopEtcd() error {
	if s.etcd != nil {
		s.etcd.Close()
	}
	return nil
}

// adminClient builds the admin kubeconfig (written last) and its client configuration.
func (s *starting) adminClient(context.Context) (bool, string, error) {
	s.own = kubeconfig.Build(kubeconfig.Credentials{
		Name: s.p.ContextName(), Server: s.plan.Server(),
		CAPEM: s.bundle.CACertPEM, Token: s.bundle.AdminToken,
	})
	var err error
	if s.restConfig, err = kubeconfig.RESTConfig(s.own); err != nil {
		return false, "", fmt.Errorf("admin client config: %w", err)
	}
	return false, "", nil
}

// loadModules compiles the configured modules; reported only when there are some. The
// extensions that run them are made whatever the modules, so that a reload can add some.
func (s *starting) loadModules(ctx context.Context) (bool, string, error) {
	cacheDir := s.opts.ModuleCacheDir
	if cacheDir == "" {
		cacheDir = ModuleCacheDir()
	}
	s.mods = newClusterModules(s.modules, cacheDir, s.plan.Modules.AuthorizationChain, slog.New(logr.ToSlogHandler(klog.Background())))
	n, err := s.mods.load(ctx, s.p, s.plan.Modules)
	if err != nil {
		_ = s.mods.close()
		return false, "", err
	}
	if s.ext, s.adm, err = s.mods.extensions(); err != nil {
		_ = s.mods.close()
		return false, "", err
	}
	return n > 0, fmt.Sprintf("%d loaded", n), nil
}

// closeModules closes the modules, after the apiserver has stopped.
func (s *starting) closeModules() error { return s.mods.close() }

// startAPIServer starts the kube-apiserver with the modules and waits until it is ready.
func (s *starting) startAPIServer(ctx context.Context) (bool, string, error) {
	logOut, err := s.c.logOutput(s.plan.Layout, s.opts.LogOutput)
	if err != nil {
		return false, "", err
	}
	hooks := withModules(s.opts.Hooks, s.ext, s.adm, s.plan.Modules, s.mods.decisions)
	// ctx bounds the start-up only; the components run until Stop.
	api, err := apiserver.Start(context.WithoutCancel(ctx), apiserver.StartInput{Plan: s.plan.Plan, Listener: s.ln, Hooks: hooks, LogOutput: logOut, Mark: s.opts.Trace.Mark})
	if err != nil {
		return false, "", err
	}
	s.api = api
	timeout := s.opts.ReadyTimeout
	if timeout == 0 {
		timeout = DefaultReadyTimeout
	}
	if err := s.waitReady(ctx, timeout); err != nil {
		_ = api.Stop()
		return false, "", fmt.Errorf("%w (logs: %s)", err, s.plan.Layout.Logs())
	}
	return true, s.plan.Server(), nil
}

// waitReady waits for /readyz and the default namespace. When etcd already holds the bootstrap
// objects of this Kubernetes version (recorded by an earlier start), the two hooks that
// reconcile them are not waited for: they find nothing to change, and each first sleeps a
// second upstream. Otherwise every check is waited for, and the bootstrap is then recorded.
func (s *starting) waitReady(ctx context.Context, timeout time.Duration) error {
	if s.bootstrapped {
		return s.api.WaitReady(ctx, s.restConfig, timeout, apiserver.BootstrapChecks...)
	}
	if err := s.api.WaitReady(ctx, s.restConfig, timeout); err != nil {
		return err
	}
	if s.plan.ExternalEtcd != nil {
		return nil
	}
	if err := pki.WriteFileAtomic(s.plan.Layout.Bootstrapped(), []byte(apiserver.KubernetesVersion()+"\n")); err != nil {
		return fmt.Errorf("record the bootstrap: %w", err)
	}
	return nil
}

// bootstrapRecorded reports whether the embedded etcd holds data and an earlier start of this
// Kubernetes version recorded that its bootstrap objects were written.
func bootstrapRecorded(plan *apiserver.Plan) bool {
	if plan.ExternalEtcd != nil || !exists(filepath.Join(plan.Layout.Etcd(), "member")) {
		return false
	}
	b, err := os.ReadFile(plan.Layout.Bootstrapped())
	return err == nil && strings.TrimSpace(string(b)) == apiserver.KubernetesVersion()
}

// startControllers starts kube-controller-manager when the plan runs it.
func (s *starting) startControllers(ctx context.Context) (started bool, _ string, err error) {
	s.cm, started, err = startComponent(ctx, s, s.plan.ControllerManagerArgs, "kube-controller-manager",
		s.bundle.ControllerManagerCert(), s.bundle.ControllerManagerKey(), s.plan.Layout.ControllerManagerKubeconfig(), apiserver.StartControllerManager)
	return started, "", err
}

// startComponent starts kube-controller-manager or kube-scheduler with start when the plan
// runs it (args set), after writing its kubeconfig, which authenticates with its client
// certificate (cert, key). The component runs until Stop, past ctx.
func startComponent[T any](ctx context.Context, s *starting, args []string, name, cert, key, kubeconfigPath string,
	start func(context.Context, *apiserver.Plan) (T, error)) (T, bool, error) {
	var none T
	if args == nil {
		return none, false, nil
	}
	if err := writeComponentKubeconfig(s.plan.Plan, s.bundle, name, cert, key, kubeconfigPath); err != nil {
		return none, false, err
	}
	c, err := start(context.WithoutCancel(ctx), s.plan.Plan)
	if err != nil {
		return none, false, err
	}
	return c, true, nil
}

func (s *starting) stopControllers() error {
	if s.cm == nil {
		return nil
	}
	return s.cm.Stop()
}

func (s *starting) writeKubeconfig(context.Context) (bool, string, error) {
	return false, "", kubeconfig.Write(s.plan.Layout.Kubeconfig(), s.own)
}

// ensurePKI creates or reuses the cluster's certificates and keys and says what it did. When the
// embedded etcd already holds data, a lost CA or service-account key is an error saying what to
// do, unless newCA; a new CA over existing data is said in the detail.
func ensurePKI(plan *apiserver.Plan, newCA bool) (*pki.Bundle, string, error) {
	ips := []net.IP{}
	if ip := net.ParseIP(plan.Address); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		ips = append(ips, ip)
	}
	dir := plan.Layout.PKI().Dir
	hasData := plan.ExternalEtcd == nil && exists(filepath.Join(plan.Layout.Etcd(), "member"))
	bundle, err := pki.Ensure(pki.Request{Dir: dir, IPs: ips, ClusterData: hasData && !newCA})
	switch {
	case errors.Is(err, pki.ErrLost):
		return nil, "", fmt.Errorf("data dir %s holds cluster data (etcd/) but its PKI is damaged: %w. "+
			"Restore %s from a backup; or start with `wasmkube up --new-ca` to issue a new CA and service-account key "+
			"(kubeconfigs and ServiceAccount tokens issued before stop working); or delete the cluster with `wasmkube reset --yes`",
			plan.Layout.DataDir, err, dir)
	case err != nil:
		return nil, "", fmt.Errorf("pki in %s: %w", dir, err)
	}
	detail := describePKI(bundle)
	if hasData && bundle.NewCA {
		detail += "; NEW CA over existing cluster data: credentials issued before no longer work"
	}
	return bundle, detail, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// startEtcd starts the embedded etcd on the plan's socket, or checks that the external one
// answers (and returns no server).
func startEtcd(ctx context.Context, plan *apiserver.Plan, trace *Trace) (*etcd.Server, error) {
	if ext := plan.ExternalEtcd; ext != nil {
		var tlsConfig *tls.Config
		if ext.CAFile != "" || ext.CertFile != "" {
			info := transport.TLSInfo{TrustedCAFile: ext.CAFile, CertFile: ext.CertFile, KeyFile: ext.KeyFile}
			var err error
			if tlsConfig, err = info.ClientConfig(); err != nil {
				return nil, fmt.Errorf("external etcd TLS files (etcd.external in the profile): %w", err)
			}
		}
		return nil, etcd.CheckReachable(ctx, etcd.External{Servers: ext.Servers, TLS: tlsConfig}, 5*time.Second)
	}
	logFile := filepath.Join(plan.Layout.Logs(), "etcd.log")
	srv, err := etcd.Start(ctx, etcd.Config{DataDir: plan.Layout.Etcd(), Socket: plan.Layout.EtcdSocket(), LogFile: logFile, UnsafeNoFsync: !plan.EtcdFsync, Mark: trace.Mark})
	if err != nil {
		return nil, fmt.Errorf("%w (log: %s)", err, logFile)
	}
	return srv, nil
}

// withModules adds the modules' extensions to the caller's hooks: the admission plugin is
// registered with the options (when the plan enables it), the authenticator and the
// authorizer, at WASM's place in the authorizer chain, are added to the config, and the
// decision log is served at hook.DecisionsPath.
func withModules(hooks apiserver.Hooks, ext apiserver.Extensions, adm *hook.Admission, w profiles.ModulePlan, decisions *hook.DecisionLog) apiserver.Hooks {
	ext.AuthorizerName, ext.AuthorizerAt = profiles.WASM, profiles.AuthorizerPlace(w.AuthorizationChain)
	if adm != nil && w.AdmissionEnabled {
		userOptions := hooks.Options
		hooks.Options = func(s *options.ServerRunOptions) error {
			apiserver.RegisterAdmissionPlugin(s, profiles.WASM, adm.Factory())
			if userOptions != nil {
				return userOptions(s)
			}
			return nil
		}
	}
	if ext.Token != nil || ext.Authorizer != nil || decisions != nil {
		userConfig := hooks.Config
		hooks.Config = func(cfg *app.Config) error {
			if err := apiserver.Extend(cfg, ext); err != nil {
				return err
			}
			if decisions != nil {
				apiserver.Serve(cfg, apiserver.Handler{Path: hook.DecisionsPath, Handler: decisions, LongRunning: hook.IsFollow})
			}
			if userConfig != nil {
				return userConfig(cfg)
			}
			return nil
		}
	}
	return hooks
}

// startScheduler starts kube-scheduler when the plan runs it.
func (s *starting) startScheduler(ctx context.Context) (started bool, _ string, err error) {
	s.sched, started, err = startComponent(ctx, s, s.plan.SchedulerArgs, "kube-scheduler",
		s.bundle.SchedulerCert(), s.bundle.SchedulerKey(), s.plan.Layout.SchedulerKubeconfig(), apiserver.StartScheduler)
	return started, "", err
}

func (s *starting) stopScheduler() error {
	if s.sched == nil {
		return nil
	}
	return s.sched.Stop()
}

// startNodes creates the simulated nodes and starts kwok's controllers when the plan has nodes,
// and removes those an earlier start made when it has none.
func (s *starting) startNodes(ctx context.Context) (bool, string, error) {
	if s.plan.Nodes == nil {
		// Nodes an earlier start made would stay NotReady, their Pods stranded.
		n, err := nodes.Remove(ctx, s.restConfig)
		if err != nil {
			return false, "", fmt.Errorf("simulated nodes no longer in the profile: %w", err)
		}
		return n > 0, fmt.Sprintf("removed %d simulated (the profile has none)", n), nil
	}
	sim, err := nodes.Start(ctx, s.restConfig, *s.plan.Nodes, klog.Background().WithName("kwok"))
	if err != nil {
		return false, "", fmt.Errorf("simulated nodes: %w (logs: %s)", err, s.plan.Layout.Logs())
	}
	s.sim = sim
	return true, fmt.Sprintf("%d simulated (kwok)", s.plan.Nodes.Count), nil
}

func (s *starting) stopNodes() error {
	if s.sim != nil {
		s.sim.Stop()
	}
	return nil
}
