package wasmkube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adrg/xdg"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/wasmkube/wasmkube/apiserver/pki"
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm/hook"
	"github.com/wasmkube/wasmkube/wasm/source"
)

// DefaultBridgePort is the port a bridge listens on when BridgeOptions.Port is zero.
const DefaultBridgePort = 9443

// BridgeOptions configure a webhook bridge (StartBridge) and the configuration that points an API
// server at it (NewBridgeConfig); both must be given the same options.
type BridgeOptions struct {
	// Address is where the bridge listens; 127.0.0.1 when empty.
	Address string
	// Port is the port; DefaultBridgePort when zero.
	Port int
	// URL is how kube-apiserver reaches the bridge (https://HOST:PORT, no path), written into the
	// webhook configuration; https://ADDRESS:PORT when empty (127.0.0.1 for a wildcard address).
	URL string
	// Hosts are DNS names and IP addresses the serving certificate covers besides loopback and
	// URL's host (a Service's name, a node's address).
	Hosts []string
	// CertDir keeps the bridge's CA, serving certificate and the client certificate of
	// kube-apiserver (pki.EnsureBridge); BridgeCertDir(profile) when empty. Replicas share it.
	CertDir string
	// ModuleCacheDir keeps compiled modules; ModuleCacheDir() when empty.
	ModuleCacheDir string
	// BuiltinModules holds the modules a profile names as builtin:NAME (as Options.BuiltinModules).
	BuiltinModules fs.FS
	// ModuleFetcher fetches remote modules (as Options.ModuleFetcher).
	ModuleFetcher *source.Fetcher
	// ExemptNamespaces are left out of every printed admission webhook (namespaceSelector):
	// the bridge's own namespace, so that a failurePolicy Fail module cannot keep the bridge's
	// Pods from being created when no replica runs.
	ExemptNamespaces []string
	// AdmissionClientAuth makes the admission webhooks, too, answer only kube-apiserver's client
	// certificate; NewBridgeConfig then writes the AdmissionConfiguration that has kube-apiserver
	// present it (a cluster whose kube-apiserver flags can be set; not a managed one).
	AdmissionClientAuth bool
	// Kubernetes is the cluster the bridge serves, for Kubernetes policies that read it
	// (contextAwareResources, kubernetes/can_i); nil: such policies are refused at start.
	Kubernetes *rest.Config
	// Logger gets the bridge's log; slog.Default() when nil.
	Logger *slog.Logger
}

// BridgeCertDir is where a profile's bridge keeps its certificates by default:
// $XDG_DATA_HOME/wasmkube/bridge/NAME.
func BridgeCertDir(p *profiles.Loaded) string {
	return filepath.Join(xdg.DataHome, "wasmkube", "bridge", p.Name)
}

// withDefaults fills the empty options.
func (o BridgeOptions) withDefaults(p *profiles.Loaded) (BridgeOptions, error) {
	if o.Address == "" {
		o.Address = "127.0.0.1"
	}
	if net.ParseIP(o.Address) == nil {
		return o, fmt.Errorf("--address %q: give an IP address to listen on (0.0.0.0 for every interface)", o.Address)
	}
	if o.Port == 0 {
		o.Port = DefaultBridgePort
	}
	if o.Port < 0 || o.Port > 65535 {
		return o, fmt.Errorf("--port %d: give a port from 1 to 65535", o.Port)
	}
	if o.URL == "" {
		host := o.Address
		if ip := net.ParseIP(host); ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		o.URL = "https://" + net.JoinHostPort(host, strconv.Itoa(o.Port))
	}
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return o, fmt.Errorf("--url %q: give https://HOST[:PORT], how kube-apiserver reaches the bridge", o.URL)
	}
	o.URL = strings.TrimSuffix(o.URL, "/")
	if o.CertDir == "" {
		o.CertDir = BridgeCertDir(p)
	}
	if o.ModuleCacheDir == "" {
		o.ModuleCacheDir = ModuleCacheDir()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// moduleReader reads the modules the options give access to.
func (o BridgeOptions) moduleReader() moduleReader {
	f := o.ModuleFetcher
	if f == nil {
		f = source.New(source.Config{Logger: o.Logger})
	}
	return moduleReader{builtin: o.BuiltinModules, remote: f}
}

// pkiRequest is what the serving certificate must cover: loopback, URL's host and Hosts.
func (o BridgeOptions) pkiRequest() pki.Request {
	req := pki.Request{Dir: o.CertDir}
	hosts := append([]string{}, o.Hosts...)
	if u, err := url.Parse(o.URL); err == nil {
		hosts = append(hosts, u.Hostname())
	}
	if ip := net.ParseIP(o.Address); ip != nil && !ip.IsUnspecified() {
		req.IPs = append(req.IPs, ip)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			req.IPs = append(req.IPs, ip)
		} else if h != "" {
			req.DNSNames = append(req.DNSNames, h)
		}
	}
	return req
}

// bridgePlan is where the bridge's modules go: the profile's and the original's config files,
// with the authorization modules asked whatever the profile's chain (the API server that calls
// the bridge places them).
func bridgePlan(p *profiles.Loaded) profiles.ModulePlan {
	w := profiles.TakeWASMFlags(p.Profile, nil).Modules
	w.AuthorizationChain = []string{profiles.WASM}
	return w
}

// Bridge serves a profile's modules as webhooks over TLS (`wasmkube serve`): any API server (kind,
// k3s, a managed cluster) configured with NewBridgeConfig's files calls them as the in-process
// server does. Start it with StartBridge.
//
// # Notes
//
//   - Stateless: replicas with the same profile and CertDir behind a Service answer alike.
//   - /authenticate and /authorize answer only a client presenting a certificate of the bridge's
//     CA (the printed kubeconfigs carry one): they tell who a token belongs to and what a user
//     may do. The admission webhooks take any TLS client, as webhooks usually do, unless
//     BridgeOptions.AdmissionClientAuth.
//   - /healthz is 200 while the process serves; /readyz is 200 once the modules are loaded and
//     until Stop begins; /metrics has the module metrics (wasmkube_module_*); /wasmkube/decisions
//     the modules' latest decisions (ndjson, ?follow=true&module=NAME), to the same clients as
//     /authenticate.
type Bridge struct {
	mods     *clusterModules
	opts     BridgeOptions
	srv      *http.Server
	ln       net.Listener
	ready    atomic.Bool
	done     chan struct{}
	serveErr error
	stopOnce sync.Once
	stopErr  error
	// life ends when Stop begins.
	life   context.Context
	cancel context.CancelFunc
}

// StartBridge loads p's modules and serves them; it returns once the bridge listens and is
// ready. Stop it with Stop.
func StartBridge(ctx context.Context, p *profiles.Loaded, opts BridgeOptions) (_ *Bridge, err error) {
	opts, err = opts.withDefaults(p)
	if err != nil {
		return nil, err
	}
	bundle, err := pki.EnsureBridge(opts.pkiRequest())
	if err != nil {
		return nil, fmt.Errorf("the bridge's certificates in %s: %w", opts.CertDir, err)
	}
	b := &Bridge{opts: opts, done: make(chan struct{}),
		mods: newClusterModules(opts.moduleReader(), opts.ModuleCacheDir, []string{profiles.WASM}, opts.Logger)}
	life, cancel := context.WithCancel(context.Background())
	b.life, b.cancel = life, cancel
	defer func() {
		if err != nil {
			cancel()
			_ = b.mods.close()
		}
	}()
	if err := b.connect(life, p); err != nil {
		return nil, err
	}
	if _, err := b.mods.load(ctx, p, bridgePlan(p)); err != nil {
		return nil, fmt.Errorf("load profile %s: %w", p.Source, err)
	}
	tlsConfig, err := bridgeTLS(bundle)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(opts.Address, strconv.Itoa(opts.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (choose another with --port)", addr, err)
	}
	b.ln = ln
	// A slow client cannot hold a connection: headers within 10 s, the whole request within 30 s
	// (kube-apiserver sends a review at once). No write timeout: decisions may be followed.
	b.srv = &http.Server{Handler: b.handler(), TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, IdleTimeout: 90 * time.Second, ErrorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn)}
	go func() {
		defer close(b.done)
		if err := b.srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			b.serveErr = err
		}
	}()
	b.ready.Store(true)
	return b, nil
}

// connect points the Kubernetes policies' host at opts.Kubernetes, or refuses a profile with
// policies that read the cluster when there is none.
func (b *Bridge) connect(ctx context.Context, p *profiles.Loaded) error {
	cfg := b.opts.Kubernetes
	if cfg == nil {
		if where := readsCluster(p); where != "" {
			return fmt.Errorf("%s reads the cluster (contextAwareResources or kubernetes host capabilities): give the bridge the cluster's kubeconfig (--kubeconfig)", where)
		}
		return nil
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("the cluster's client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("the cluster's discovery client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	b.mods.kube.Connect(dyn, mapper, nil, ctx.Done())
	return nil
}

// readsCluster names the first admission entry of p that reads the cluster, or is "".
func readsCluster(p *profiles.Loaded) string {
	if p.Admission == nil {
		return ""
	}
	for i, m := range p.Admission.Modules {
		g := m.Grants
		if g == nil {
			continue
		}
		reads := len(g.ContextAwareResources) > 0
		for _, c := range g.HostCapabilities {
			reads = reads || c == "*" || strings.HasPrefix(c, "kubernetes/")
		}
		if reads {
			return fmt.Sprintf("profile %s: admission.modules[%d] (%s)", p.Name, i, m.Name)
		}
	}
	return ""
}

// bridgeTLS serves the bridge's certificate and verifies client certificates of its CA when
// given (required per path by requireClientCert).
func bridgeTLS(b *pki.BridgeBundle) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(b.BridgeServingCert(), b.BridgeServingKey())
	if err != nil {
		return nil, fmt.Errorf("the bridge's serving certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CACertPEM) {
		return nil, fmt.Errorf("the bridge's CA %s holds no certificate", b.CACert())
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// handler routes the webhooks and the health and metrics endpoints.
func (b *Bridge) handler() http.Handler {
	h := b.mods.live.WebhookHandlers()
	mux := http.NewServeMux()
	mux.Handle(hook.WebhookAuthenticatePath, requireClientCert(http.HandlerFunc(h.Authenticate)))
	mux.Handle(hook.WebhookAuthorizePath, requireClientCert(http.HandlerFunc(h.Authorize)))
	var admit http.Handler = http.HandlerFunc(h.Admit)
	if b.opts.AdmissionClientAuth {
		admit = requireClientCert(admit)
	}
	mux.Handle(hook.WebhookAdmissionPath, admit)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !b.ready.Load() {
			http.Error(w, "not ready: loading the modules, or stopping", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.Handle("/metrics", legacyregistry.Handler())
	// The modules' decisions, as `wasmkube decisions` shows a cluster's; a follower ends when the
	// bridge stops.
	mux.Handle(hook.DecisionsPath, requireClientCert(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer context.AfterFunc(b.life, cancel)()
		defer cancel()
		b.mods.decisions.ServeHTTP(w, r.WithContext(ctx))
	})))
	return mux
}

// requireClientCert answers 401 to a client without a verified certificate of the bridge's CA.
func requireClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "present the client certificate of the bridge's printed kubeconfig (wasmkube serve --print-config)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// URL is how kube-apiserver reaches the bridge (BridgeOptions.URL).
func (b *Bridge) URL() string { return b.opts.URL }

// Addr is the address the bridge listens on.
func (b *Bridge) Addr() net.Addr { return b.ln.Addr() }

// Done is closed when the bridge has stopped serving (Stop, or a failure: see Err).
func (b *Bridge) Done() <-chan struct{} { return b.done }

// Err is why the bridge stopped serving on its own; nil while it serves and after Stop.
func (b *Bridge) Err() error {
	select {
	case <-b.done:
		return b.serveErr
	default:
		return nil
	}
}

// Reload loads p's modules and makes them the bridge's, as Cluster.Reload does; on an error the
// old modules keep serving. NeedsRestart is always empty: everything a bridge serves reloads.
func (b *Bridge) Reload(ctx context.Context, p *profiles.Loaded) (ReloadResult, error) {
	start := time.Now()
	if where := readsCluster(p); where != "" && b.opts.Kubernetes == nil {
		return ReloadResult{}, fmt.Errorf("reload profile %s: %s reads the cluster: restart the bridge with --kubeconfig", p.Source, where)
	}
	n, err := b.mods.load(ctx, p, bridgePlan(p))
	if err != nil {
		return ReloadResult{}, fmt.Errorf("reload profile %s: %w; the modules loaded before keep serving", p.Source, err)
	}
	return ReloadResult{Modules: n, Took: time.Since(start)}, nil
}

func (b *Bridge) modulePlan(p *profiles.Loaded) profiles.ModulePlan { return bridgePlan(p) }

// NewWatcher watches the files of the profile load reads and reloads the bridge, as
// Cluster.NewWatcher does for a cluster.
func (b *Bridge) NewWatcher(load func() (*profiles.Loaded, error)) (*Watcher, error) {
	return newWatcher(b, load)
}

// Stop stops the bridge gracefully: /readyz fails at once, requests in flight finish (until ctx
// ends), then the modules close.
func (b *Bridge) Stop(ctx context.Context) error {
	b.stopOnce.Do(func() {
		b.ready.Store(false)
		b.cancel()
		err := b.srv.Shutdown(ctx)
		<-b.done
		b.stopErr = errors.Join(err, b.mods.close())
	})
	return b.stopErr
}
