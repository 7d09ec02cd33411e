package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/featuregate"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// Hooks let the layers above plug into the kube-apiserver's construction without this package
// knowing them (the WebAssembly adapters use them).
type Hooks struct {
	// Options runs after the flags are parsed and before the options are completed: register
	// admission plugins here.
	Options func(*options.ServerRunOptions) error
	// Config runs after app.NewConfig and before the config is completed: wrap authenticators and
	// authorizers here.
	Config func(*app.Config) error
}

// StartInput is what Start needs.
type StartInput struct {
	Plan *Plan
	// Listener is the opened secure port (see Listen).
	Listener net.Listener
	Hooks    Hooks
	// LogOutput receives the components' logs (klog). Only the first Start of a process sets it:
	// Kubernetes logging is configured once per process.
	LogOutput io.Writer
	// Mark, when set, is told when each phase of the start-up ends (a trace): the options
	// parsed, the config built, the server chain created and prepared, the first answer, each
	// /readyz check passed, /readyz ok and the default namespace present.
	Mark func(phase, detail string)
}

// APIServer is a running kube-apiserver.
type APIServer struct {
	// Loopback is the server's own privileged client configuration (user system:apiserver).
	Loopback *rest.Config
	mark     func(phase, detail string)
	component
}

// Listen opens the secure port. Port 0 binds a free port; the kernel picks it, so two clusters
// never race for one port.
func Listen(address string, port int32) (net.Listener, error) {
	hostport := net.JoinHostPort(address, fmt.Sprint(port))
	ln, err := net.Listen("tcp", hostport)
	switch {
	case err == nil:
		return ln, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("port %d on %s is already in use (another wasmkube cluster or kube-apiserver?): choose another with `up --port N` or the profile's port field, or use --port 0 to pick a free one", port, address)
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("not allowed to listen on %s: ports below 1024 need privileges; use a port such as 6443 or --port 0", hostport)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("cannot listen on %s: %s is not an address of this machine; use 127.0.0.1 (the default)", hostport, address)
	}
	return nil, fmt.Errorf("listen on %s: %w", hostport, err)
}

// Start builds a kube-apiserver from the plan's flags exactly as its own command does and runs it
// until ctx is done or Stop is called. It returns once the server is constructed and serving
// has begun; use WaitReady to wait for /readyz.
//
// # Notes
//
//   - Kubernetes keeps feature gates, the component version registry, logging and metrics in
//     process-global state: run one kube-apiserver per process at a time.
//   - On error, everything started is stopped before Start returns.
func Start(ctx context.Context, in StartInput) (_ *APIServer, err error) {
	StampKubernetesVersion()
	mark := in.Mark
	if mark == nil {
		mark = func(string, string) {}
	}
	s, featureGate, err := serverOptions(in)
	if err != nil {
		return nil, err
	}
	mark("kube-apiserver options parsed", "")
	// The informer name is registered process-wide; release it when this server is done.
	informerName := s.InformerName
	runCtx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
			informerName.Release()
		}
	}()
	prepared, loopback, err := buildServer(runCtx, s, featureGate, in.Hooks, mark)
	if err != nil {
		return nil, err
	}
	a := &APIServer{Loopback: loopback, mark: mark}
	a.start(cancel, func() error {
		defer informerName.Release()
		return prepared.Run(runCtx)
	})
	return a, nil
}

// serverOptions parses the plan's flags into kube-apiserver's options as its command does, on
// the opened listener, applies the feature gates and logging, runs Hooks.Options and registers
// the informer name (the caller releases it).
func serverOptions(in StartInput) (*options.ServerRunOptions, featuregate.FeatureGate, error) {
	s := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(in.Plan.APIServerArgs); err != nil {
		return nil, nil, fmt.Errorf("kube-apiserver flags: %w; check apiserver.extraArgs in the profile and --apiserver-arg", err)
	}
	s.SecureServing.Listener = in.Listener
	s.SecureServing.BindPort = in.Listener.Addr().(*net.TCPAddr).Port

	featureGate := s.GenericServerRunOptions.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, nil, fmt.Errorf("kube-apiserver feature gates or emulated version: %w", err)
	}
	if err := applyLogging(s, featureGate, in.LogOutput); err != nil {
		return nil, nil, fmt.Errorf("kube-apiserver logging: %w", err)
	}
	if in.Hooks.Options != nil {
		if err := in.Hooks.Options(s); err != nil {
			return nil, nil, err
		}
	}
	var err error
	if s.InformerName, err = cache.NewInformerName("kube-apiserver"); err != nil {
		return nil, nil, fmt.Errorf("kube-apiserver informer name: %w", err)
	}
	return s, featureGate, nil
}

// buildServer completes and validates the options, builds the config (running Hooks.Config)
// and the server chain, and prepares it to run; it also returns the server's loopback client
// configuration.
func buildServer(ctx context.Context, s *options.ServerRunOptions, featureGate featuregate.FeatureGate, hooks Hooks, mark func(phase, detail string)) (preparedServer, *rest.Config, error) {
	completed, err := s.Complete(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("complete kube-apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return nil, nil, fmt.Errorf("kube-apiserver options: %w; check apiserver.extraArgs in the profile and --apiserver-arg", utilerrors.NewAggregate(errs))
	}
	featureGate.(featuregate.MutableFeatureGate).AddMetrics()

	mark("kube-apiserver options completed", "")
	config, err := app.NewConfig(completed)
	if err != nil {
		return nil, nil, fmt.Errorf("kube-apiserver config: %w", err)
	}
	mark("kube-apiserver config built", "")
	if hooks.Config != nil {
		if err := hooks.Config(config); err != nil {
			return nil, nil, err
		}
	}
	cc, err := config.Complete()
	if err != nil {
		return nil, nil, fmt.Errorf("complete kube-apiserver config: %w", err)
	}
	chain, err := app.CreateServerChain(cc)
	if err != nil {
		return nil, nil, fmt.Errorf("create kube-apiserver: %w", err)
	}
	mark("kube-apiserver server chain created", "")
	prepared, err := chain.PrepareRun()
	if err != nil {
		return nil, nil, fmt.Errorf("prepare kube-apiserver: %w", err)
	}
	mark("kube-apiserver prepared", "")
	return prepared, rest.CopyConfig(chain.GenericAPIServer.LoopbackClientConfig), nil
}

// preparedServer is the server chain ready to run.
type preparedServer interface{ Run(context.Context) error }

// klog, the logging configuration and its output are process-global in Kubernetes; this is the
// one place wasmkube sets them, once per process.
var processLogging struct {
	once sync.Once
	err  error
}

func applyLogging(s *options.ServerRunOptions, fg featuregate.FeatureGate, out io.Writer) error {
	processLogging.once.Do(func() {
		if out == nil {
			out = os.Stderr
		}
		processLogging.err = logsapi.ValidateAndApplyWithOptions(s.Logs, &logsapi.LoggingOptions{ErrorStream: out, InfoStream: out}, fg)
	})
	if processLogging.err != nil && strings.Contains(processLogging.err.Error(), "already applied") {
		return nil
	}
	return processLogging.err
}
