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
	"github.com/wasmkube/wasmkube/apiserver/pki"
	"github.com/wasmkube/wasmkube/datadir"
	"github.com/wasmkube/wasmkube/etcd"
	"github.com/wasmkube/wasmkube/internal/lifecycle"
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm/hook"
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
	// NewCA lets Up replace a lost CA or service-account key of a data dir that holds cluster
	// data (`up --new-ca`). Without it that is an error: credentials issued before stop working.
	NewCA bool
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
	Plan *apiserver.Plan

	life    *lifecycle.Stopper
	etcdErr <-chan error
}

// Up starts the cluster a profile describes and returns when it is ready: /readyz answers ok,
// the default namespace exists, the controllers run and the kubeconfig is written.
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
func Up(ctx context.Context, p *profiles.Loaded, opts Options) (_ *Cluster, err error) {
	plan, err := PlanFor(p, opts)
	if err != nil {
		return nil, err
	}
	// Before anything starts: a policy asking for more than it is granted is a profile error.
	if err := checkGrants(opts.BuiltinModules, p, plan.WASM); err != nil {
		return nil, err
	}
	c := &Cluster{Name: p.Name, DataDir: plan.Layout.DataDir, life: lifecycle.New()}
	defer func() {
		if err != nil {
			_ = c.runStops()
		}
	}()
	progress := opts.Progress
	if progress == nil {
		progress = func(Step) {}
	}

	start := time.Now()
	state, err := datadir.Prepare(plan.Layout.DataDir, Version())
	if err != nil {
		return nil, err
	}
	if err := c.lock(plan.Layout, p.Name); err != nil {
		return nil, err
	}
	if state == datadir.Adopted {
		progress(Step{Name: "data", Duration: time.Since(start), Detail: "written by an older wasmkube: adopted, " + datadir.MarkerName + " added"})
	}

	start = time.Now()
	bundle, pkiDetail, err := ensurePKI(plan, opts.NewCA)
	if err != nil {
		return nil, err
	}
	progress(Step{Name: "pki", Duration: time.Since(start), Detail: pkiDetail})

	ln, err := apiserver.Listen(plan.Address, plan.Port)
	if err != nil {
		return nil, err
	}
	c.onStop(func() error { _ = ln.Close(); return nil }) // no-op once the server owns it
	plan = plan.WithPort(int32(ln.Addr().(*net.TCPAddr).Port))

	start = time.Now()
	if err := c.startEtcd(ctx, plan); err != nil {
		return nil, err
	}
	detail := "embedded"
	if plan.ExternalEtcd != nil {
		detail = "external " + strings.Join(plan.EtcdServers, ",")
	}
	progress(Step{Name: "etcd", Duration: time.Since(start), Detail: detail})

	own := kubeconfig.Build(kubeconfig.Credentials{
		Name: p.ContextName(), Server: plan.Server(),
		CAPEM: bundle.CACertPEM, Token: bundle.AdminToken,
	})
	restConfig, err := kubeconfig.RESTConfig(own)
	if err != nil {
		return nil, fmt.Errorf("admin client config: %w", err)
	}

	start = time.Now()
	cacheDir := opts.ModuleCacheDir
	if cacheDir == "" {
		cacheDir = ModuleCacheDir()
	}
	logOut, err := c.logOutput(plan.Layout, opts.LogOutput)
	if err != nil {
		return nil, err
	}
	mods, ext, adm, err := loadModules(ctx, opts.BuiltinModules, p, plan.WASM, cacheDir, slog.New(logr.ToSlogHandler(klog.Background())))
	if err != nil {
		return nil, err
	}
	if mods != nil {
		c.onStop(mods.close) // after the apiserver has stopped
		progress(Step{Name: "modules", Duration: time.Since(start), Detail: fmt.Sprintf("%d loaded", mods.count())})
		start = time.Now()
	}
	hooks := withModules(opts.Hooks, ext, adm)
	// ctx bounds the start-up only; the components run until Stop.
	runCtx := context.WithoutCancel(ctx)
	api, err := apiserver.Start(runCtx, apiserver.StartInput{Plan: plan, Listener: ln, Hooks: hooks, LogOutput: logOut})
	if err != nil {
		return nil, err
	}
	c.onStop(api.Stop)
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = DefaultReadyTimeout
	}
	if err := api.WaitReady(ctx, restConfig, timeout); err != nil {
		return nil, fmt.Errorf("%w (logs: %s)", err, plan.Layout.Logs())
	}
	progress(Step{Name: "kube-apiserver", Duration: time.Since(start), Detail: plan.Server()})

	var cm *apiserver.ControllerManager
	if plan.ControllerManagerArgs != nil {
		start = time.Now()
		if err := writeControllerManagerKubeconfig(plan, bundle); err != nil {
			return nil, err
		}
		if cm, err = apiserver.StartControllerManager(runCtx, plan); err != nil {
			return nil, err
		}
		c.onStop(cm.Stop)
		progress(Step{Name: "controllers", Duration: time.Since(start)})
	}

	if err := kubeconfig.Write(plan.Layout.Kubeconfig(), own); err != nil {
		return nil, err
	}
	c.Server, c.KubeconfigPath, c.Kubeconfig, c.RESTConfig, c.Plan = plan.Server(), plan.Layout.Kubeconfig(), own, restConfig, plan
	go c.watch(api, cm)
	return c, nil
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
// answers.
func (c *Cluster) startEtcd(ctx context.Context, plan *apiserver.Plan) error {
	if ext := plan.ExternalEtcd; ext != nil {
		var tlsConfig *tls.Config
		if ext.CAFile != "" || ext.CertFile != "" {
			info := transport.TLSInfo{TrustedCAFile: ext.CAFile, CertFile: ext.CertFile, KeyFile: ext.KeyFile}
			var err error
			if tlsConfig, err = info.ClientConfig(); err != nil {
				return fmt.Errorf("external etcd TLS files (etcd.external in the profile): %w", err)
			}
		}
		if err := etcd.CheckReachable(ctx, etcd.External{Servers: ext.Servers, TLS: tlsConfig}, 5*time.Second); err != nil {
			return err
		}
		return nil
	}
	srv, err := etcd.Start(ctx, etcd.Config{
		DataDir: plan.Layout.Etcd(),
		Socket:  plan.Layout.EtcdSocket(),
		LogFile: filepath.Join(plan.Layout.Logs(), "etcd.log"),
	})
	if err != nil {
		return fmt.Errorf("%w (log: %s)", err, filepath.Join(plan.Layout.Logs(), "etcd.log"))
	}
	c.onStop(func() error { srv.Close(); return nil })
	c.etcdErr = srv.Err()
	return nil
}

// withModules adds the modules' extensions to the caller's hooks: the admission plugin is
// registered with the options, the authenticator and authorizer are added to the config.
func withModules(hooks apiserver.Hooks, ext apiserver.Extensions, adm *hook.Admission) apiserver.Hooks {
	if adm != nil {
		userOptions := hooks.Options
		hooks.Options = func(s *options.ServerRunOptions) error {
			apiserver.RegisterAdmissionPlugin(s, hook.AdmissionPluginName, adm.Factory())
			if userOptions != nil {
				return userOptions(s)
			}
			return nil
		}
	}
	if ext.Token != nil || ext.Authorizer != nil {
		userConfig := hooks.Config
		hooks.Config = func(cfg *app.Config) error {
			if err := apiserver.Extend(cfg, ext); err != nil {
				return err
			}
			if userConfig != nil {
				return userConfig(cfg)
			}
			return nil
		}
	}
	return hooks
}
