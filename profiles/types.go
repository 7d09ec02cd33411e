// Package profiles defines the wasmkube Profile (apiVersion wasmkube.dev/v1alpha1, kind Profile):
// the on-disk description of one local cluster instance, its listen address, data directory, etcd,
// controllers, extra kube-apiserver flags and the WebAssembly modules that extend authentication,
// authorization and admission.
//
// A profile is read strictly: an unknown or duplicated field, a wrong type or an invalid value is an
// error that names the file, the line and the field. Profiles are found by Resolve in this order: a
// path; $XDG_CONFIG_HOME/wasmkube/profiles/NAME.yaml; the profiles built into the binary (demo,
// minimal).
//
// The package also reads the original proof of concept's configuration: its module config files
// (LoadModuleList, LoadAdmissionConfigModules) and its kube-apiserver flags (TakeWASMFlags), and
// declares the one name the modules run under in kube-apiserver (WASM).
package profiles

import (
	"cmp"
	"encoding/json"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// APIVersion and Kind identify a profile document.
const (
	APIVersion = "wasmkube.dev/v1alpha1"
	Kind       = "Profile"
)

// Defaults applied by SetDefaults.
const (
	DefaultAddress = "127.0.0.1"
	DefaultPort    = 6443
)

// Profile describes one local cluster instance: how its kube-apiserver listens, where its data
// lives, which etcd it uses, whether kube-controller-manager runs, and which modules extend it.
type Profile struct {
	// APIVersion must be wasmkube.dev/v1alpha1.
	APIVersion string `json:"apiVersion"`
	// Kind must be Profile.
	Kind string `json:"kind"`
	// Name names the instance: the data directory, the lock and the kubeconfig context
	// (wasmkube-NAME) derive from it. Lowercase letters, digits and '-'.
	Name string `json:"name"`
	// Address is the IP the kube-apiserver binds to. Default 127.0.0.1 (loopback only).
	Address string `json:"address,omitempty"`
	// Port is the kube-apiserver's secure port. Default 6443; 0 picks a free port at start.
	Port *int32 `json:"port,omitempty"`
	// DataDir overrides the data directory (default $XDG_DATA_HOME/wasmkube/NAME). A relative
	// path is relative to the profile file.
	DataDir string `json:"dataDir,omitempty"`
	// Etcd selects the embedded etcd (the default) or external servers.
	Etcd Etcd `json:"etcd,omitempty"`
	// Controllers configures the in-process kube-controller-manager.
	Controllers Controllers `json:"controllers,omitempty"`
	// Scheduler configures the in-process kube-scheduler.
	Scheduler Scheduler `json:"scheduler,omitempty"`
	// Nodes are simulated nodes (kwok): Pods bound to them report Running without containers.
	Nodes *Nodes `json:"nodes,omitempty"`
	// APIServer configures the kube-apiserver beyond what wasmkube sets.
	APIServer APIServer `json:"apiserver,omitempty"`
	// Authentication lists token authenticator modules.
	Authentication *Authentication `json:"authentication,omitempty"`
	// Authorization lists authorizer modules and their place in the authorizer chain.
	Authorization *Authorization `json:"authorization,omitempty"`
	// Admission lists validating and mutating admission modules.
	Admission *Admission `json:"admission,omitempty"`
}

// Etcd selects the storage of the cluster.
type Etcd struct {
	// External, when set, names etcd servers to use; then no etcd is embedded.
	External *ExternalEtcd `json:"external,omitempty"`
	// Fsync makes the embedded etcd sync each write to disk before acknowledging it. Default
	// false: writes reach the kernel, so a killed wasmkube (even kill -9) loses nothing, but a
	// machine crash or power loss may lose the last seconds of writes or leave the data dir
	// unreadable (`wasmkube reset --yes` starts over). Not allowed with external.
	Fsync *bool `json:"fsync,omitempty"`
}

// EtcdFsync reports whether the embedded etcd syncs each write (default false).
func (p *Profile) EtcdFsync() bool { return p.Etcd.Fsync != nil && *p.Etcd.Fsync }

// ExternalEtcd names an etcd cluster that wasmkube does not run.
type ExternalEtcd struct {
	// Servers are client URLs, e.g. https://127.0.0.1:2379.
	Servers []string `json:"servers"`
	// CAFile, CertFile and KeyFile secure the connection (paths relative to the profile file).
	CAFile   string `json:"caFile,omitempty"`
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// Prefix is the key prefix of the cluster's data. Default /registry.
	Prefix string `json:"prefix,omitempty"`
}

// Controllers configures the in-process kube-controller-manager.
type Controllers struct {
	// Enabled runs kube-controller-manager in-process. Default true.
	Enabled *bool `json:"enabled,omitempty"`
	// ExtraArgs are extra kube-controller-manager flags, "name=value" (a leading "--" is optional).
	// A flag named here replaces wasmkube's own value for it.
	ExtraArgs []string `json:"extraArgs,omitempty"`
}

// Scheduler configures the in-process kube-scheduler.
type Scheduler struct {
	// Enabled runs kube-scheduler in-process. Default: true when the profile has nodes.
	Enabled *bool `json:"enabled,omitempty"`
	// ExtraArgs are extra kube-scheduler flags, "name=value" (a leading "--" is optional), e.g.
	// pod-max-in-unschedulable-pods-duration=1m. Flags that would change what wasmkube owns
	// (identity, ports, leader election, logging, feature gates, a config file) are refused.
	ExtraArgs []string `json:"extraArgs,omitempty"`
}

// Defaults of Nodes.
const (
	DefaultNodeCPU    = "4"
	DefaultNodeMemory = "16Gi"
	DefaultNodePods   = 110
	// MaxNodes bounds nodes.count; MaxNodePods bounds nodes.pods (each node's pod IPs are a /24).
	MaxNodes    = 1000
	MaxNodePods = 250
)

// Nodes describes simulated nodes, run by kwok's controllers: Node objects that stay Ready, and
// Pods bound to them that get IPs and report Running (or Succeeded, when a Job's containers
// would have ended) without running anything.
type Nodes struct {
	// Count is how many nodes, 0-1000. Nodes are named NAME-node-0, NAME-node-1, … (NAME: the
	// profile's name).
	Count int32 `json:"count"`
	// CPU, Memory and Pods are each node's capacity, as quantities. Defaults 4, 16Gi, 110; Pods
	// at most 250.
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
	Pods   *int32 `json:"pods,omitempty"`
}

// APIServer configures the kube-apiserver.
type APIServer struct {
	// ExtraArgs are extra kube-apiserver flags, "name=value" (a leading "--" is optional). A flag
	// named here replaces wasmkube's own value for it; a flag named twice here is passed twice
	// (for list flags). The listen address and port are set by address and port, not here.
	ExtraArgs []string `json:"extraArgs,omitempty"`
}

// Module is what every hook's module entry shares.
type Module struct {
	// Name identifies the module in errors, logs, metrics and audit annotations. Default: the
	// module file's base name without extension.
	Name string `json:"name,omitempty"`
	// Module is a path to a .wasm file (relative to the profile file), builtin:NAME, an
	// https:// URL (with SHA256), or an OCI artifact in a registry: registry://HOST/REPO:TAG
	// (Kubewarden's scheme) or oci://HOST/REPO:TAG, optionally @sha256:… for the manifest.
	// Fetched modules are cached by digest and used offline once fetched.
	Module string `json:"module"`
	// SHA256 pins the module's bytes, sha256:HEX: a module with other bytes is never run.
	// Required for https://; checked for every source when given.
	SHA256 string `json:"sha256,omitempty"`
	// Settings is any JSON value, sent to the module with every call.
	Settings json.RawMessage `json:"settings,omitempty"`
	// Timeout bounds one call. Default 2s.
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// MemoryLimit bounds a module instance's memory, as a quantity (e.g. 64Mi). Rounded up to
	// 64 KiB WebAssembly pages.
	MemoryLimit string `json:"memoryLimit,omitempty"`
	// Isolation is pooled (default: pre-initialized instances, reused) or fresh (a new instance
	// per call, as the original proof of concept did).
	Isolation string `json:"isolation,omitempty"`
	// PoolSize bounds concurrent calls of a pooled module: its instances, made when concurrent
	// calls need them (one at load). Default: the number of CPUs.
	PoolSize *int32 `json:"poolSize,omitempty"`
	// Debug logs each call's input and output, with tokens redacted.
	Debug bool `json:"debug,omitempty"`
	// Grants are what the module may reach besides its input and output; nothing by default.
	Grants *Grants `json:"grants,omitempty"`
}

// Grants give a module environment variables, arguments or read-only directories, and a
// Kubewarden policy the cluster reads and host capabilities it may use.
type Grants struct {
	// Env are environment variables the module sees (it sees none of the host's).
	Env map[string]string `json:"env,omitempty"`
	// Args are the module's arguments (argv).
	Args []string `json:"args,omitempty"`
	// ReadOnlyDirs mount host directories read-only into the module's file system.
	ReadOnlyDirs []DirMount `json:"readOnlyDirs,omitempty"`
	// ContextAwareResources are the kinds a Kubewarden policy may read from the cluster
	// (type: kubewarden only). A policy whose metadata asks for a kind not granted here is
	// refused at start.
	ContextAwareResources []ContextAwareResource `json:"contextAwareResources,omitempty"`
	// HostCapabilities are the host calls a Kubewarden policy may make besides reads and
	// logging (type: kubewarden only), as "namespace/operation" patterns: kubernetes/can_i,
	// net/v1/dns_lookup_host, crypto/v1/is_certificate_trusted, "net/*", "*"… A policy whose
	// metadata asks for more is refused at start.
	HostCapabilities []string `json:"hostCapabilities,omitempty"`
}

// ContextAwareResource is a kind a Kubewarden policy may read, at one API version.
type ContextAwareResource struct {
	// APIVersion is group/version, or version for the core group (v1).
	APIVersion string `json:"apiVersion"`
	// Kind is the kind, e.g. Ingress.
	Kind string `json:"kind"`
}

// DirMount mounts a host directory at a path inside the module.
type DirMount struct {
	// HostPath is the directory on the host (relative to the profile file).
	HostPath string `json:"hostPath"`
	// GuestPath is where the module sees it, an absolute path such as /data.
	GuestPath string `json:"guestPath"`
}

// Authentication lists token authenticator modules, tried in order after the built-in
// authenticators; the first to authenticate wins.
type Authentication struct {
	// CacheTTL caches successful authentications. Default 10s; 0 disables the cache.
	CacheTTL *metav1.Duration `json:"cacheTTL,omitempty"`
	Modules  []Module         `json:"modules,omitempty"`
}

// Authorization lists authorizer modules and where they sit in the authorizer chain.
type Authorization struct {
	// Chain orders the authorizers; WASM stands for the modules. Default [Node, RBAC, WASM].
	Chain []string `json:"chain,omitempty"`
	// CacheTTL caches the modules' decisions (Allow, Deny, NoOpinion; never one reached after a
	// module failed) for requests with the same attributes. Default 10s; 0 disables the cache.
	CacheTTL *metav1.Duration      `json:"cacheTTL,omitempty"`
	Modules  []AuthorizationModule `json:"modules,omitempty"`
}

// AuthorizationModule is one authorizer module.
type AuthorizationModule struct {
	Module `json:",inline"`
	// FailurePolicy decides on a module error: NoOpinion (default) or Deny.
	FailurePolicy string `json:"failurePolicy,omitempty"`
}

// Admission lists admission modules: mutating ones run in order, then validating ones.
type Admission struct {
	Modules []AdmissionModule `json:"modules,omitempty"`
}

// AdmissionModule is one admission module; matching works as for admission webhooks.
type AdmissionModule struct {
	Module `json:",inline"`
	// Mutating puts the module in the mutating phase. For a Kubewarden policy it defaults to
	// the policy metadata's mutating; otherwise to false.
	Mutating *bool `json:"mutating,omitempty"`
	// Type is envelope (the original module ABI, default) or kubewarden; wasi, the old name of
	// envelope, is accepted (Deprecations names it).
	Type string `json:"type,omitempty"`
	// ExecutionMode picks a Kubewarden policy's mode when its metadata does not:
	// kubewarden-wapc, wasi, opa or gatekeeper.
	ExecutionMode string `json:"executionMode,omitempty"`
	// Entrypoint names the entrypoint a Rego policy (executionMode opa or gatekeeper) evaluates,
	// as the module's entrypoints() lists it ("kubernetes/admission/main"); default: for
	// gatekeeper the one named violation, else the first. `wasmkube module inspect` lists them.
	Entrypoint string `json:"entrypoint,omitempty"`
	// Rules select the requests the module sees. No rules: never called (a Kubewarden policy
	// without them uses its metadata's rules).
	Rules []admissionregistrationv1.RuleWithOperations `json:"rules,omitempty"`
	// FailurePolicy decides on a module error: Fail (default) or Ignore.
	FailurePolicy string `json:"failurePolicy,omitempty"`
	// NamespaceSelector and ObjectSelector filter requests as for webhooks.
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	ObjectSelector    *metav1.LabelSelector `json:"objectSelector,omitempty"`
	// MatchConditions are CEL expressions, as for webhooks; all must be true.
	MatchConditions []admissionregistrationv1.MatchCondition `json:"matchConditions,omitempty"`
	// Mode is protect (default: the module's decisions count) or monitor (every request is
	// allowed; what the module would have decided is logged and recorded in the audit
	// annotation NAME/monitor), as Kubewarden's policy modes.
	Mode string `json:"mode,omitempty"`
	// Message, when set, replaces the module's message when it rejects a request.
	Message string `json:"message,omitempty"`
}

// IsMutating reports whether the entry says the module mutates (false when it says nothing).
func (m *AdmissionModule) IsMutating() bool { return m.Mutating != nil && *m.Mutating }

// ControllersEnabled reports whether kube-controller-manager runs (default true).
func (p *Profile) ControllersEnabled() bool {
	return p.Controllers.Enabled == nil || *p.Controllers.Enabled
}

// SchedulerEnabled reports whether kube-scheduler runs: scheduler.enabled, else whether the
// profile has nodes.
func (p *Profile) SchedulerEnabled() bool {
	if p.Scheduler.Enabled != nil {
		return *p.Scheduler.Enabled
	}
	return p.NodeCount() > 0
}

// NodeCount is the number of simulated nodes (0 without nodes).
func (p *Profile) NodeCount() int32 {
	if p.Nodes == nil {
		return 0
	}
	return p.Nodes.Count
}

// EffectiveCPU, EffectiveMemory and EffectivePods are a node's capacity, defaults applied.
func (n *Nodes) EffectiveCPU() string    { return cmp.Or(n.CPU, DefaultNodeCPU) }
func (n *Nodes) EffectiveMemory() string { return cmp.Or(n.Memory, DefaultNodeMemory) }
func (n *Nodes) EffectivePods() int32 {
	if n.Pods == nil {
		return DefaultNodePods
	}
	return *n.Pods
}

// EffectivePort returns the configured port or DefaultPort.
func (p *Profile) EffectivePort() int32 {
	if p.Port == nil {
		return DefaultPort
	}
	return *p.Port
}

// EffectiveAddress returns the configured address or DefaultAddress.
func (p *Profile) EffectiveAddress() string {
	if p.Address == "" {
		return DefaultAddress
	}
	return p.Address
}

// ContextName is the kubeconfig cluster, user and context name of the profile.
func (p *Profile) ContextName() string { return "wasmkube-" + p.Name }

// The types of an admission module (AdmissionModule.Type).
const (
	// TypeEnvelope is the original module ABI: a JSON envelope on stdin and stdout (the default).
	TypeEnvelope = "envelope"
	// TypeKubewarden is a Kubewarden policy.
	TypeKubewarden = "kubewarden"
	// TypeWASI is the old name of TypeEnvelope, kept so profiles and the original's module lists
	// load unchanged. WASI is the system interface every module uses, and one of Kubewarden's
	// execution modes: the name said nothing.
	TypeWASI = "wasi"
)

// Deprecations names what the profile says in a way that still works but should change, one
// line per use, with the field's path: today the admission type wasi.
func (p *Profile) Deprecations() []string {
	var out []string
	if p.Admission == nil {
		return nil
	}
	for i, m := range p.Admission.Modules {
		if m.Type == TypeWASI {
			out = append(out, fmt.Sprintf("admission.modules[%d].type: %q is the old name of %q (the original module ABI); write type: %s", i, TypeWASI, TypeEnvelope, TypeEnvelope))
		}
	}
	return out
}
