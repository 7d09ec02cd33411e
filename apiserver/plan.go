// Package apiserver runs kube-apiserver and kube-controller-manager in-process, unmodified,
// through their own app packages.
//
// Data is kept apart from effects: NewPlan turns a profile into a Plan (every flag and file of
// both components) without touching anything, so `wasmkube up --dry-run` can print it and golden
// tests can check it; Start then runs a Plan.
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
	"github.com/wasmkube/wasmkube/profiles"
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

// Logs holds component logs.
func (l Layout) Logs() string { return filepath.Join(l.DataDir, "logs") }

// Lock is held while a cluster runs on this data directory.
func (l Layout) Lock() string { return filepath.Join(l.DataDir, "wasmkube.lock") }

// KubectlCache is the discovery cache of the built-in kubectl.
func (l Layout) KubectlCache() string { return filepath.Join(l.DataDir, "kubectl-cache") }

// FlexVolumeDir keeps kube-controller-manager from creating /usr/libexec/kubernetes on the host.
func (l Layout) FlexVolumeDir() string { return filepath.Join(l.DataDir, "flexvolume") }

// PlanInput is what a Plan is built from.
type PlanInput struct {
	Profile *profiles.Loaded
	// DataDir is the resolved data directory.
	DataDir string
	// Address and Port override the profile when Address is non-empty / Port non-nil.
	Address string
	Port    *int32
	// ExtraAPIServerArgs come from `up --apiserver-arg`; they override the profile's extraArgs.
	ExtraAPIServerArgs []string
}

// Plan describes one run of kube-apiserver and kube-controller-manager.
type Plan struct {
	Name    string
	Address string
	// Port is the secure port; 0 means a free port is picked when the listener opens.
	Port   int32
	Layout Layout
	// EtcdServers are the etcd client URLs: the embedded etcd's socket (unix://PATH), or the
	// profile's external servers.
	EtcdServers []string
	// ExternalEtcd is set when the profile names external etcd servers.
	ExternalEtcd *profiles.ExternalEtcd
	// APIServerArgs are the kube-apiserver flags, "--name=value", in order.
	APIServerArgs []string
	// ControllerManagerArgs are kube-controller-manager's flags; nil when it does not run.
	ControllerManagerArgs []string
	// WASM is where the modules go, from the profile and the original proof of concept's flags.
	WASM WASMPlan
}

// WASMPlan is what the kube-apiserver flags say about modules. The original proof of concept's
// flags are wasmkube's, not kube-apiserver's: NewPlan takes them out of APIServerArgs.
type WASMPlan struct {
	// AuthenticationConfigFile and AuthorizationConfigFile are the original's
	// --authentication-wasm-config-file and --authorization-wasm-config-file.
	AuthenticationConfigFile string `json:"authenticationConfigFile,omitempty"`
	AuthorizationConfigFile  string `json:"authorizationConfigFile,omitempty"`
	// AuthorizationChain is --authorization-mode with WASM where the modules sit; the flag
	// kube-apiserver gets lacks WASM.
	AuthorizationChain []string `json:"authorizationChain"`
	// AdmissionEnabled says the WASM admission plugin is enabled (--enable-admission-plugins).
	AdmissionEnabled bool `json:"admissionEnabled"`
	// AdmissionConfigFile is --admission-control-config-file, whose WASM plugin entry may list
	// modules (kube-apiserver reads it too, for its own plugins).
	AdmissionConfigFile string `json:"admissionConfigFile,omitempty"`
}

// arg is one flag before rendering.
type arg struct{ name, value string }

// NewPlan builds the plan for a profile. It has no effects.
func NewPlan(in PlanInput) (*Plan, error) {
	p := in.Profile
	addr := p.EffectiveAddress()
	if in.Address != "" {
		addr = in.Address
	}
	ip := net.ParseIP(addr)
	if ip == nil {
		return nil, fmt.Errorf("address %q is not an IP address", addr)
	}
	port := p.EffectivePort()
	if in.Port != nil {
		port = *in.Port
	}
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("port %d is out of range: use 0 (pick a free port) or 1-65535", port)
	}
	for _, a := range in.ExtraAPIServerArgs {
		name, _, _ := profiles.SplitArg(a)
		if name == "bind-address" || name == "secure-port" {
			return nil, fmt.Errorf("--apiserver-arg %q: set the listen address and port with --address and --port", a)
		}
	}
	plan := &Plan{
		Name:    p.Name,
		Address: addr,
		Port:    port,
		Layout:  Layout{DataDir: in.DataDir},
	}
	plan.EtcdServers = []string{"unix://" + plan.Layout.EtcdSocket()}
	if ext := p.Etcd.External; ext != nil {
		e := *ext
		e.CAFile, e.CertFile, e.KeyFile = in.Profile.ResolvePath(e.CAFile), in.Profile.ResolvePath(e.CertFile), in.Profile.ResolvePath(e.KeyFile)
		plan.ExternalEtcd = &e
		plan.EtcdServers = e.Servers
	}
	args := mergeArgs(plan.apiserverDefaults(ip, authorizationChain(p.Profile)), parseArgs(p.APIServer.ExtraArgs), parseArgs(in.ExtraAPIServerArgs))
	args, plan.WASM = takeWASMFlags(args, p.Admission != nil && len(p.Admission.Modules) > 0)
	plan.APIServerArgs = render(args)
	if p.ControllersEnabled() {
		plan.ControllerManagerArgs = render(mergeArgs(plan.controllerManagerDefaults(), parseArgs(p.Controllers.ExtraArgs)))
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

// authorizationChain is the profile's authorizer chain, WASM included (default Node,RBAC,WASM).
func authorizationChain(p *profiles.Profile) string {
	if p.Authorization == nil || len(p.Authorization.Chain) == 0 {
		return "Node,RBAC," + hookPluginName
	}
	return strings.Join(p.Authorization.Chain, ",")
}

// hookPluginName is how the original proof of concept named its authorizer and admission plugin.
const hookPluginName = "WASM"

// Flags of the original proof of concept that kube-apiserver does not know.
const (
	flagAuthnConfig = "authentication-wasm-config-file"
	flagAuthzConfig = "authorization-wasm-config-file"
)

// takeWASMFlags takes what is about modules out of the merged kube-apiserver flags: the
// original's config-file flags are removed, WASM is taken out of --authorization-mode (an empty
// remainder becomes AlwaysDeny: only the modules decide), and WASM is added to
// --enable-admission-plugins when the profile lists admission modules.
func takeWASMFlags(args []arg, admissionModules bool) ([]arg, WASMPlan) {
	var w WASMPlan
	out := make([]arg, 0, len(args))
	enabledAt, configFile := -1, ""
	for _, a := range args {
		switch a.name {
		case flagAuthnConfig:
			w.AuthenticationConfigFile = a.value
			continue
		case flagAuthzConfig:
			w.AuthorizationConfigFile = a.value
			continue
		case "authorization-mode":
			w.AuthorizationChain = strings.Split(a.value, ",")
			builtin := slices.DeleteFunc(slices.Clone(w.AuthorizationChain), func(m string) bool { return m == hookPluginName })
			if len(builtin) == 0 {
				builtin = []string{"AlwaysDeny"}
			}
			a.value = strings.Join(builtin, ",")
		case "enable-admission-plugins":
			enabledAt = len(out)
			w.AdmissionEnabled = slices.Contains(strings.Split(a.value, ","), hookPluginName)
		case "admission-control-config-file":
			configFile = a.value
		}
		out = append(out, a)
	}
	if admissionModules && !w.AdmissionEnabled {
		if enabledAt < 0 {
			out = append(out, arg{"enable-admission-plugins", hookPluginName})
		} else {
			out[enabledAt].value += "," + hookPluginName
		}
		w.AdmissionEnabled = true
	}
	w.AdmissionConfigFile = configFile
	return out, w
}

func (p *Plan) apiserverDefaults(ip net.IP, authzChain string) []arg {
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
		arg{"authorization-mode", authzChain},
		arg{"enable-admission-plugins", "NodeRestriction"},
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

func parseArgs(raw []string) []arg {
	out := make([]arg, 0, len(raw))
	for _, r := range raw {
		name, value, hasValue := profiles.SplitArg(r)
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

func render(args []arg) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = "--" + a.name + "=" + a.value
	}
	return out
}
