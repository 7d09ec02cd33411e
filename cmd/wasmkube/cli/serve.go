package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
)

type serveOptions struct {
	profile     string
	address     string
	port        int
	url         string
	hosts       []string
	certDir     string
	kubeconfig  string
	printConfig bool
	configDir   string
	admissionCA bool
	exempt      []string
}

func newServeCommand(s streams) *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve a profile's modules as webhooks over TLS, for any Kubernetes cluster",
		Long: `Serve the profile's modules as the webhooks kube-apiserver calls: an authentication webhook
(TokenReview, /authenticate), an authorization webhook (SubjectAccessReview, /authorize) and one
admission webhook per admission module (/admission/NAME), decided exactly as in ` + "`wasmkube up`" + `.
The modules reload when the profile or a module file changes, and on SIGHUP. /healthz, /readyz and
/metrics serve probes and Prometheus. SIGINT or SIGTERM stops it gracefully.

--print-config prints the Mutating/ValidatingWebhookConfiguration for kubectl apply; with
--config-dir it also writes there the webhook config files of kube-apiserver and the flags naming
them (kube-apiserver.flags). The bridge's CA and certificates are created in --cert-dir on first use;
replicas behind a Service share that directory (e.g. mounted from a Secret).`,
		Example: `  wasmkube serve --profile demo                                # https://127.0.0.1:9443
  wasmkube serve --profile demo --print-config | kubectl apply -f -
  wasmkube serve --profile demo --print-config --config-dir ./bridge   # + kube-apiserver's files
  wasmkube serve --address 0.0.0.0 --url https://172.18.0.1:9443      # reachable from kind's node`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("config-dir") && !o.printConfig {
				return errors.New("--config-dir goes with --print-config")
			}
			return o.run(cmd.Context(), s)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.profile, "profile", "p", defaultProfile(), "profile name or path to a profile file (default from $"+ProfileEnv+")")
	f.StringVar(&o.address, "address", "127.0.0.1", "IP address to listen on (0.0.0.0: every interface)")
	f.IntVar(&o.port, "port", wasmkube.DefaultBridgePort, "port to listen on")
	f.StringVar(&o.url, "url", "", "how kube-apiserver reaches the bridge, https://HOST:PORT (default https://ADDRESS:PORT)")
	f.StringArrayVar(&o.hosts, "host", nil, "DNS name or IP the serving certificate also covers (repeatable), e.g. a Service's name")
	f.StringVar(&o.certDir, "cert-dir", "", "where the bridge's CA and certificates are kept (default $XDG_DATA_HOME/wasmkube/bridge/PROFILE)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster served, for Kubernetes policies that read it")
	f.BoolVar(&o.admissionCA, "admission-client-auth", false, "admission webhooks, too, answer only kube-apiserver's client certificate (--print-config --config-dir then writes the AdmissionConfiguration that presents it; not for managed clusters)")
	f.StringArrayVar(&o.exempt, "exempt-namespace", nil, "a namespace the printed admission webhooks leave out (repeatable): the bridge's own, when it runs in the cluster")
	f.BoolVar(&o.printConfig, "print-config", false, "print the admission webhook manifests (and with --config-dir write kube-apiserver's files) and exit")
	f.StringVar(&o.configDir, "config-dir", "", "with --print-config: also write the webhook config files and kube-apiserver.flags here")
	return cmd
}

func (o *serveOptions) libraryOptions() (wasmkube.BridgeOptions, error) {
	opts := wasmkube.BridgeOptions{Address: o.address, Port: o.port, URL: o.url, Hosts: o.hosts, CertDir: o.certDir, AdmissionClientAuth: o.admissionCA, ExemptNamespaces: o.exempt,
		BuiltinModules: examples.FS(), Logger: slog.New(logr.ToSlogHandler(klog.Background()))}
	if o.kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
		if err != nil {
			return opts, fmt.Errorf("--kubeconfig %s: %w", o.kubeconfig, err)
		}
		opts.Kubernetes = cfg
	}
	return opts, nil
}

func (o *serveOptions) run(ctx context.Context, s streams) error {
	p, err := wasmkube.ResolveProfile(o.profile)
	if err != nil {
		return err
	}
	opts, err := o.libraryOptions()
	if err != nil {
		return err
	}
	if o.printConfig {
		return o.print(ctx, s, p, opts)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	b, err := wasmkube.StartBridge(ctx, p, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "Serving the modules of profile %s (%s) as webhooks at %s (listening on %s)\n", p.Name, p.Source, b.URL(), b.Addr())
	fmt.Fprintf(s.out, "  configure a cluster: wasmkube serve --profile %s --print-config [--config-dir DIR]\n", o.profile)
	stopWatching := watchBridge(ctx, s, p, o.profile, b, hup)
	defer stopWatching()
	select {
	case <-ctx.Done():
	case <-b.Done():
		return fmt.Errorf("the bridge stopped: %w", b.Err())
	}
	fmt.Fprintln(s.out, "Stopping: requests in flight finish, then the modules close")
	stopCtx, cancel := context.WithTimeout(context.Background(), StopTimeout)
	defer cancel()
	return b.Stop(stopCtx)
}

// print prints the admission manifests and writes kube-apiserver's files into --config-dir.
func (o *serveOptions) print(ctx context.Context, s streams, p *profiles.Loaded, opts wasmkube.BridgeOptions) error {
	c, err := wasmkube.NewBridgeConfig(ctx, p, opts)
	if err != nil {
		return err
	}
	if _, err := s.out.Write(c.AdmissionWebhooks); err != nil {
		return err
	}
	if o.configDir == "" {
		if args := c.APIServerArgs("DIR"); len(args) > 0 {
			fmt.Fprintln(s.err, "# kube-apiserver's webhook config files: add --config-dir DIR to write them and the flags naming them")
		}
		return nil
	}
	written, err := c.Write(o.configDir)
	if err != nil {
		return err
	}
	for _, f := range written {
		fmt.Fprintf(s.err, "# wrote %s\n", f)
	}
	return nil
}

// watchBridge reloads the bridge's modules when its profile or module files change and on
// SIGHUP, printing each outcome, until the returned function is called.
func watchBridge(ctx context.Context, s streams, p *profiles.Loaded, ref string, b *wasmkube.Bridge, hup <-chan os.Signal) (stop func()) {
	return watchProfile(ctx, s, p, ref, b.NewWatcher, hup, func(r wasmkube.ReloadReport) {
		st := reloadStatus{Cause: r.Cause, OK: r.Err == nil, Modules: r.Result.Modules, Seconds: time.Since(r.Detected).Seconds()}
		if r.Err != nil {
			st.Error = r.Err.Error()
			klog.ErrorS(r.Err, "Reload failed; the modules loaded before keep serving", "cause", r.Cause)
		}
		fmt.Fprint(s.out, describeReload(st))
	})
}

// forwardHangups turns each SIGHUP into a reload request (one pending at most) until ctx ends.
func forwardHangups(ctx context.Context, hup <-chan os.Signal) <-chan struct{} {
	reload := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				select {
				case reload <- struct{}{}:
				default: // a reload is already asked for
				}
			}
		}
	}()
	return reload
}
