// Package apiserver runs kube-apiserver and kube-controller-manager in-process, unmodified,
// through their own app packages, and extends the kube-apiserver with an authenticator, an
// authorizer placed anywhere in its authorizer chain, and admission plugins (Extend, Hooks).
//
// It knows nothing of profiles or modules: its inputs are plain values (PlanInput, Extensions).
// Data is kept apart from effects: NewPlan turns them into a Plan (every flag and file of both
// components) without touching anything, so `wasmkube up --dry-run` can print it and golden tests
// can check it; Start then runs a Plan.
package apiserver

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/wasmkube/wasmkube/apiserver/pki"
)

// Cluster-wide constants of every wasmkube cluster.
const (
	ServiceClusterIPRange = "10.96.0.0/12"
	ServiceAccountIssuer  = "https://kubernetes.default.svc.cluster.local"
)

// Layout names the files and directories of one cluster's data directory.
type Layout struct{ DataDir string }

// PKI is where certificates and keys live.
func (l Layout) PKI() pki.Paths { return pki.Paths{Dir: filepath.Join(l.DataDir, "pki")} }

// Etcd is the embedded etcd's data.
func (l Layout) Etcd() string { return filepath.Join(l.DataDir, "etcd") }

// MaxSocketPath is the longest unix socket path every supported platform binds (sun_path holds
// 104 bytes with the terminating NUL on macOS, 108 on Linux).
const MaxSocketPath = 103

// EtcdSocket is the unix socket the embedded etcd serves its clients on: DATADIR/etcd.sock. When
// that path is too long for a socket, or holds a comma (--etcd-servers is a list), the socket is
// named after the data dir (etcd-HASH.sock) in a private directory of the user's:
// $XDG_RUNTIME_DIR/wasmkube, else $TMPDIR/wasmkube-UID, else /tmp/wasmkube-UID. It is a name
// only; etcd.Start creates the directory 0700 and refuses one another user owns.
func (l Layout) EtcdSocket() string {
	own := filepath.Join(l.DataDir, "etcd.sock")
	if socketPathUsable(own) {
		return own
	}
	sum := sha256.Sum256([]byte(l.DataDir))
	name := "etcd-" + hex.EncodeToString(sum[:8]) + ".sock"
	user := fmt.Sprintf("wasmkube-%d", os.Geteuid())
	var dirs []string
	if rt := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(rt) {
		dirs = append(dirs, filepath.Join(rt, "wasmkube"))
	}
	dirs = append(dirs, filepath.Join(os.TempDir(), user))
	for _, d := range dirs {
		if p := filepath.Join(d, name); socketPathUsable(p) {
			return p
		}
	}
	return filepath.Join("/tmp", user, name)
}

func socketPathUsable(p string) bool {
	return len(p) <= MaxSocketPath && !strings.Contains(p, ",")
}

// Kubeconfig is the admin kubeconfig.
func (l Layout) Kubeconfig() string { return filepath.Join(l.DataDir, "kubeconfig") }

// ControllerManagerKubeconfig is kube-controller-manager's own kubeconfig.
func (l Layout) ControllerManagerKubeconfig() string {
	return filepath.Join(l.DataDir, "controller-manager.kubeconfig")
}

// SchedulerKubeconfig is kube-scheduler's own kubeconfig.
func (l Layout) SchedulerKubeconfig() string { return filepath.Join(l.DataDir, "scheduler.kubeconfig") }

// Logs holds component logs.
func (l Layout) Logs() string { return filepath.Join(l.DataDir, "logs") }

// Bootstrapped records the Kubernetes version whose bootstrap objects (RBAC roles, system
// priority classes) the embedded etcd holds: written once a start passed every /readyz check.
// It lives in etcd's directory (embedded etcd ignores other files there), so it goes with the
// data it describes.
func (l Layout) Bootstrapped() string { return filepath.Join(l.Etcd(), "wasmkube-bootstrapped") }

// Lock is held while a cluster runs on this data directory.
func (l Layout) Lock() string { return filepath.Join(l.DataDir, "wasmkube.lock") }

// PIDFile holds the process ID of the cluster's process while the lock is held.
func (l Layout) PIDFile() string { return filepath.Join(l.DataDir, "wasmkube.pid") }

// KubectlCache is the discovery cache of the built-in kubectl.
func (l Layout) KubectlCache() string { return filepath.Join(l.DataDir, "kubectl-cache") }

// FlexVolumeDir keeps kube-controller-manager from creating /usr/libexec/kubernetes on the host.
func (l Layout) FlexVolumeDir() string { return filepath.Join(l.DataDir, "flexvolume") }

// PlanInput is what a Plan is built from: plain values, resolved by the caller.
type PlanInput struct {
	// Name names the cluster (kube-controller-manager's --cluster-name is wasmkube-NAME).
	Name string
	// DataDir is the resolved data directory.
	DataDir string
	// Address is the IP address to listen on; Port the secure port (0: a free port).
	Address string
	Port    int32
	// ExternalEtcd, when set, replaces the embedded etcd.
	ExternalEtcd *ExternalEtcd
	// AuthorizationModes is the default --authorization-mode (the built-in authorizer chain).
	AuthorizationModes []string
	// AdmissionPlugins are enabled next to NodeRestriction by the default
	// --enable-admission-plugins.
	AdmissionPlugins []string
	// ExtraAPIServerArgs are layers of extra kube-apiserver flags ("name=value"), each laid over
	// the defaults and the layers before it (see mergeArgs). They must not set the listen
	// address or port.
	ExtraAPIServerArgs [][]string
	// EtcdFsync makes the embedded etcd sync each write to disk (see Plan.EtcdFsync).
	EtcdFsync bool
	// Controllers says kube-controller-manager runs, with ExtraControllerManagerArgs laid over
	// its defaults.
	Controllers                bool
	ExtraControllerManagerArgs []string
	// Scheduler says kube-scheduler runs, with ExtraSchedulerArgs laid over its defaults.
	Scheduler          bool
	ExtraSchedulerArgs []string
}

// ExternalEtcd names etcd servers that wasmkube does not run; files are absolute paths.
type ExternalEtcd struct {
	Servers                   []string
	CAFile, CertFile, KeyFile string
	// Prefix is the key prefix of the cluster's data; kube-apiserver's default when empty.
	Prefix string
}

// Plan describes one run of kube-apiserver and kube-controller-manager.
type Plan struct {
	Name    string
	Address string
	// Port is the secure port; 0 means a free port is picked when the listener opens.
	Port   int32
	Layout Layout
	// EtcdServers are the etcd client URLs: the embedded etcd's socket (unix://PATH), or the
	// external servers.
	EtcdServers []string
	// ExternalEtcd is set when external etcd servers replace the embedded etcd.
	ExternalEtcd *ExternalEtcd
	// EtcdFsync: the embedded etcd syncs each write to disk before acknowledging it. Without it
	// a killed process loses nothing (the kernel has the writes) but a machine crash may.
	EtcdFsync bool
	// APIServerArgs are the kube-apiserver flags, "--name=value", in order.
	APIServerArgs []string
	// ControllerManagerArgs are kube-controller-manager's flags; nil when it does not run.
	ControllerManagerArgs []string
	// SchedulerArgs are kube-scheduler's flags; nil when it does not run.
	SchedulerArgs []string
}

// arg is one flag before rendering.
type arg struct{ name, value string }

// NewPlan builds the plan. It has no effects.
func NewPlan(in PlanInput) (*Plan, error) {
	ip := net.ParseIP(in.Address)
	if ip == nil {
		return nil, fmt.Errorf("address %q is not an IP address", in.Address)
	}
	if in.Port < 0 || in.Port > 65535 {
		return nil, fmt.Errorf("port %d is out of range: use 0 (pick a free port) or 1-65535", in.Port)
	}
	layers := make([][]arg, len(in.ExtraAPIServerArgs))
	for i, raw := range in.ExtraAPIServerArgs {
		layers[i] = parseArgs(raw)
		for _, a := range layers[i] {
			if a.name == "bind-address" || a.name == "secure-port" { // from Address and Port only
				return nil, fmt.Errorf("extra kube-apiserver flag --%s: the listen address and port are set by the address and port (--address, --port)", a.name)
			}
		}
	}
	plan := &Plan{Name: in.Name, Address: in.Address, Port: in.Port, Layout: Layout{DataDir: in.DataDir}, EtcdFsync: in.EtcdFsync}
	plan.EtcdServers = []string{"unix://" + plan.Layout.EtcdSocket()}
	if ext := in.ExternalEtcd; ext != nil {
		e := *ext
		plan.ExternalEtcd = &e
		plan.EtcdServers = e.Servers
	}
	plan.APIServerArgs = render(mergeArgs(plan.apiserverDefaults(ip, in.AuthorizationModes, in.AdmissionPlugins), layers...))
	if in.Controllers {
		plan.ControllerManagerArgs = render(mergeArgs(plan.controllerManagerDefaults(), parseArgs(in.ExtraControllerManagerArgs)))
	}
	if in.Scheduler {
		plan.SchedulerArgs = render(mergeArgs(plan.schedulerDefaults(), parseArgs(in.ExtraSchedulerArgs)))
	}
	return plan, nil
}

// WithPort returns a copy of the plan whose flags name the port actually bound.
func (p *Plan) WithPort(port int32) *Plan {
	c := *p
	c.Port = port
	c.APIServerArgs = slices.Clone(p.APIServerArgs)
	for i, a := range c.APIServerArgs {
		if a == fmt.Sprintf("--secure-port=%d", p.Port) {
			c.APIServerArgs[i] = fmt.Sprintf("--secure-port=%d", port)
		}
	}
	return &c
}

// Server is the URL clients use.
func (p *Plan) Server() string {
	host := p.Address
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, fmt.Sprint(p.Port))
}

func (p *Plan) apiserverDefaults(ip net.IP, authorizationModes, admissionPlugins []string) []arg {
	k := p.Layout.PKI()
	args := []arg{
		{"bind-address", p.Address},
		{"secure-port", fmt.Sprint(p.Port)},
	}
	if ip.IsLoopback() {
		// --advertise-address alone is fatal for loopback; with no reconciler the default/kubernetes
		// Endpoints stay out of the way (see docs/rationale.md).
		args = append(args, arg{"advertise-address", p.Address}, arg{"endpoint-reconciler-type", "none"})
	}
	args = append(args, arg{"etcd-servers", strings.Join(p.EtcdServers, ",")})
	if e := p.ExternalEtcd; e != nil {
		for _, f := range []arg{{"etcd-cafile", e.CAFile}, {"etcd-certfile", e.CertFile}, {"etcd-keyfile", e.KeyFile}, {"etcd-prefix", e.Prefix}} {
			if f.value != "" {
				args = append(args, f)
			}
		}
	}
	return append(args,
		arg{"tls-cert-file", k.ServingCert()},
		arg{"tls-private-key-file", k.ServingKey()},
		arg{"client-ca-file", k.CACert()},
		arg{"token-auth-file", k.TokenAuthFile()},
		// Every request authenticates: kube-apiserver would otherwise let anonymous requests
		// read /version, /healthz and the discovery documents.
		arg{"anonymous-auth", "false"},
		arg{"service-account-issuer", ServiceAccountIssuer},
		arg{"service-account-key-file", k.ServiceAccountPub()},
		arg{"service-account-signing-key-file", k.ServiceAccountKey()},
		arg{"service-cluster-ip-range", ServiceClusterIPRange},
		arg{"authorization-mode", strings.Join(authorizationModes, ",")},
		arg{"enable-admission-plugins", strings.Join(append([]string{"NodeRestriction"}, admissionPlugins...), ",")},
		arg{"allow-privileged", "true"},
		arg{"enable-bootstrap-token-auth", "true"},
	)
}

func (p *Plan) controllerManagerDefaults() []arg {
	k := p.Layout.PKI()
	return []arg{
		{"kubeconfig", p.Layout.ControllerManagerKubeconfig()},
		{"leader-elect", "false"},
		{"secure-port", "0"},
		{"use-service-account-credentials", "true"},
		{"service-account-private-key-file", k.ServiceAccountKey()},
		{"root-ca-file", k.CACert()},
		{"cluster-signing-cert-file", k.CACert()},
		{"cluster-signing-key-file", k.CAKey()},
		{"cluster-name", "wasmkube-" + p.Name},
		{"controllers", "*,bootstrap-signer-controller,token-cleaner-controller"},
		// The defaults (20 QPS, burst 30) throttle the ~45 controllers' start-up (ServiceAccounts,
		// tokens, discovery) to seconds; one local apiserver takes far more.
		{"kube-api-qps", "200"},
		{"kube-api-burst", "400"},
		{"flex-volume-plugin-dir", p.Layout.FlexVolumeDir()},
	}
}

func (p *Plan) schedulerDefaults() []arg {
	return []arg{
		{"kubeconfig", p.Layout.SchedulerKubeconfig()},
		// Off: with leader election, kube-scheduler ends the whole process when it stops.
		{"leader-elect", "false"},
		// No serving port: its health and metrics are the process's, through the kube-apiserver.
		{"secure-port", "0"},
		// The defaults (50 QPS, burst 100) bind at most 50 pods a second.
		{"kube-api-qps", "500"},
		{"kube-api-burst", "1000"},
	}
}

func parseArgs(raw []string) []arg {
	out := make([]arg, 0, len(raw))
	for _, r := range raw {
		name, value, hasValue := splitArg(r)
		if !hasValue {
			value = "true"
		}
		out = append(out, arg{name, value})
	}
	return out
}

// mergeArgs lays layers over base: a flag named in a later layer replaces every earlier
// occurrence of that flag; a flag named twice in one layer is kept twice (list flags).
func mergeArgs(base []arg, layers ...[]arg) []arg {
	out := slices.Clone(base)
	for _, layer := range layers {
		names := map[string]bool{}
		for _, a := range layer {
			names[a.name] = true
		}
		out = slices.DeleteFunc(out, func(a arg) bool { return names[a.name] })
		out = append(out, layer...)
	}
	return out
}

// splitArg splits "--name=value", "name=value" or "name" into its name and value; hasValue is
// false for a bare name.
func splitArg(raw string) (name, value string, hasValue bool) {
	return strings.Cut(strings.TrimPrefix(strings.TrimPrefix(raw, "-"), "-"), "=")
}

func render(args []arg) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = "--" + a.name + "=" + a.value
	}
	return out
}
