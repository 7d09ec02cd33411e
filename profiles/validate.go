package profiles

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// BuiltinPrefix marks a module or profile that is built into the binary.
const BuiltinPrefix = "builtin:"

// remoteSchemes are the schemes of modules fetched over the network (package wasm/source), and
// http://, which is refused.
var remoteSchemes = []string{"https://", "registry://", "oci://", "http://"}

// IsRemoteModule reports whether a module reference names a module fetched over the network
// (https://, registry://, oci://; http:// is refused by validation).
func IsRemoteModule(ref string) bool {
	for _, s := range remoteSchemes {
		if strings.HasPrefix(ref, s) {
			return true
		}
	}
	return false
}

// sha256Pin matches a module's pin: sha256:HEX, or HEX alone.
var sha256Pin = regexp.MustCompile(`^(sha256:)?[0-9a-f]{64}$`)

// MaxModuleTimeout bounds a module's timeout, as for admission webhooks.
const MaxModuleTimeout = 30 * time.Second

// apiserverOwnedFlags are kube-apiserver flags that wasmkube derives from profile fields; setting
// them through extraArgs would disagree with the listener wasmkube opens.
var apiserverOwnedFlags = map[string]string{
	"bind-address": "address",
	"secure-port":  "port",
}

var (
	authorizationChainNames = sets.New("Node", "RBAC", "ABAC", "AlwaysAllow", "AlwaysDeny", WASM)
	isolations              = sets.New("", "pooled", "fresh")
	authzFailurePolicies    = sets.New("", "NoOpinion", "Deny")
	admissionFailurePolices = sets.New("", "Fail", "Ignore")
	admissionTypes          = sets.New("", TypeEnvelope, TypeWASI, TypeKubewarden)
	admissionModes          = sets.New("", "protect", "monitor")
	executionModes          = sets.New("", "kubewarden-wapc", "wasi", "opa", "gatekeeper")
	operations              = sets.New("*", "CREATE", "UPDATE", "DELETE", "CONNECT")
)

// Validate checks a decoded profile and fills in module names that were left out (the module
// file's base name). It returns every problem found, each with its field path.
func Validate(p *Profile) field.ErrorList {
	var errs field.ErrorList
	fp := func(name string) *field.Path { return field.NewPath(name) }

	if p.Name == "" {
		errs = append(errs, field.Required(fp("name"), "every profile has a name, e.g. name: demo"))
	} else if msgs := validation.IsDNS1123Label(p.Name); len(msgs) > 0 {
		errs = append(errs, field.Invalid(fp("name"), p.Name, strings.Join(msgs, "; ")))
	}
	if p.Address != "" && net.ParseIP(p.Address) == nil {
		errs = append(errs, field.Invalid(fp("address"), p.Address, "must be an IP address such as 127.0.0.1"))
	}
	if p.Port != nil && (*p.Port < 0 || *p.Port > 65535) {
		errs = append(errs, field.Invalid(fp("port"), *p.Port, "must be 0 (pick a free port) or 1-65535"))
	}
	errs = append(errs, validateEtcd(&p.Etcd, fp("etcd"))...)
	errs = append(errs, validateExtraArgs(p.APIServer.ExtraArgs, fp("apiserver").Child("extraArgs"), apiserverOwnedFlags)...)
	errs = append(errs, validateExtraArgs(p.Controllers.ExtraArgs, fp("controllers").Child("extraArgs"), nil)...)
	errs = append(errs, validateScheduler(&p.Scheduler, fp("scheduler"))...)
	if p.Nodes != nil {
		errs = append(errs, validateNodes(p.Nodes, fp("nodes"))...)
		errs = append(errs, validateNodeNames(p)...)
	}
	if a := p.Authentication; a != nil {
		errs = append(errs, validateAuthentication(a, fp("authentication"))...)
	}
	if a := p.Authorization; a != nil {
		errs = append(errs, validateAuthorization(a, fp("authorization"))...)
	}
	if a := p.Admission; a != nil {
		errs = append(errs, validateAdmission(a, fp("admission"))...)
	}
	return errs
}

func validateEtcd(e *Etcd, fld *field.Path) field.ErrorList {
	if e.External == nil {
		return nil
	}
	var errs field.ErrorList
	if e.Fsync != nil {
		errs = append(errs, field.Forbidden(fld.Child("fsync"), "applies to the embedded etcd only; an external etcd syncs as it is configured: remove fsync or external"))
	}
	fld = fld.Child("external")
	if len(e.External.Servers) == 0 {
		errs = append(errs, field.Required(fld.Child("servers"), "name at least one etcd client URL, or remove etcd.external to use the embedded etcd"))
	}
	for i, s := range e.External.Servers {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix") || (u.Scheme != "unix" && u.Host == "") {
			errs = append(errs, field.Invalid(fld.Child("servers").Index(i), s, "must be a URL such as https://127.0.0.1:2379"))
		}
	}
	if (e.External.CertFile == "") != (e.External.KeyFile == "") {
		errs = append(errs, field.Required(fld.Child("keyFile"), "certFile and keyFile go together"))
	}
	if e.External.Prefix != "" && !strings.HasPrefix(e.External.Prefix, "/") {
		errs = append(errs, field.Invalid(fld.Child("prefix"), e.External.Prefix, "must start with /"))
	}
	return errs
}

// SplitArg splits an extra argument "--name=value", "name=value" or "name" into its name and
// value; hasValue is false for a bare name.
func SplitArg(arg string) (name, value string, hasValue bool) {
	arg = strings.TrimPrefix(strings.TrimPrefix(arg, "-"), "-")
	name, value, hasValue = strings.Cut(arg, "=")
	return name, value, hasValue
}

func validateExtraArgs(args []string, fld *field.Path, owned map[string]string) field.ErrorList {
	var errs field.ErrorList
	for i, a := range args {
		name, _, _ := SplitArg(a)
		switch {
		case name == "" || strings.ContainsAny(name, " \t"):
			errs = append(errs, field.Invalid(fld.Index(i), a, `must be "name=value", e.g. "v=2"`))
		case owned[name] != "":
			errs = append(errs, field.Forbidden(fld.Index(i), "--"+name+" is set by the profile field "+owned[name]+" (or the up flag --"+owned[name]+"); set it there"))
		}
	}
	return errs
}

// schedulerRefusedFlags are kube-scheduler flags a profile may not set, and why.
var schedulerRefusedFlags = map[string]string{
	"leader-elect":              "wasmkube runs one kube-scheduler without leader election (with it, kube-scheduler ends the whole process when it stops): remove it",
	"write-config-to":           "kube-scheduler would write the file and end the whole process: remove it (up --dry-run prints the flags)",
	"config":                    "a configuration file replaces the kubeconfig, rate limits and leader election wasmkube sets; not supported yet: remove it",
	"kubeconfig":                "wasmkube's scheduler uses its own identity on this cluster: remove it",
	"master":                    "wasmkube's scheduler uses its own identity on this cluster: remove it",
	"secure-port":               "kube-scheduler serves no port of its own (its metrics are kube-apiserver's /metrics): remove it",
	"bind-address":              "kube-scheduler serves no port of its own (its metrics are kube-apiserver's /metrics): remove it",
	"feature-gates":             "feature gates are the process's: set them in apiserver.extraArgs",
	"emulated-version":          "the emulated version is the process's: set it in apiserver.extraArgs",
	"min-compatibility-version": "the compatibility version is the process's: set it in apiserver.extraArgs",
	"v":                         "logging is the process's: set v in apiserver.extraArgs",
	"vmodule":                   "logging is the process's: set vmodule in apiserver.extraArgs",
	"logging-format":            "logging is the process's: set logging-format in apiserver.extraArgs",
}

// schedulerRefusal is why a profile may not set the kube-scheduler flag name (the
// leader-elect-* flags as leader-elect), or "".
func schedulerRefusal(name string) string {
	if strings.HasPrefix(name, "leader-elect-") {
		return schedulerRefusedFlags["leader-elect"]
	}
	return schedulerRefusedFlags[name]
}

func validateScheduler(s *Scheduler, fld *field.Path) field.ErrorList {
	errs := validateExtraArgs(s.ExtraArgs, fld.Child("extraArgs"), nil)
	for i, a := range s.ExtraArgs {
		name, _, _ := SplitArg(a)
		if why := schedulerRefusal(name); why != "" {
			errs = append(errs, field.Forbidden(fld.Child("extraArgs").Index(i), "--"+name+": "+why))
		}
	}
	return errs
}

func validateNodes(n *Nodes, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if n.Count < 0 || n.Count > MaxNodes {
		errs = append(errs, field.Invalid(fld.Child("count"), n.Count, fmt.Sprintf("must be 0-%d", MaxNodes)))
	}
	for _, q := range []struct{ name, value, example string }{{"cpu", n.CPU, "4 or 3500m"}, {"memory", n.Memory, "16Gi"}} {
		if q.value == "" {
			continue
		}
		if v, err := resource.ParseQuantity(q.value); err != nil || v.Sign() <= 0 {
			errs = append(errs, field.Invalid(fld.Child(q.name), q.value, "must be a positive quantity such as "+q.example))
		}
	}
	if n.Pods != nil && (*n.Pods < 1 || *n.Pods > MaxNodePods) {
		errs = append(errs, field.Invalid(fld.Child("pods"), *n.Pods, fmt.Sprintf("must be 1-%d: a node's pod IPs are a /24 (a kubelet's default is 110)", MaxNodePods)))
	}
	return errs
}

// validateNodeNames checks that the nodes' names, NAME-node-N, fit in a label value (the
// kubernetes.io/hostname label): at most 63 characters.
func validateNodeNames(p *Profile) field.ErrorList {
	longest := fmt.Sprintf("%s-node-%d", p.Name, max(p.NodeCount()-1, 0))
	if p.NodeCount() == 0 || len(longest) <= validation.LabelValueMaxLength {
		return nil
	}
	return field.ErrorList{field.Invalid(field.NewPath("name"), p.Name, fmt.Sprintf("too long for node names: %s has %d characters, a node name at most %d; shorten the name", longest, len(longest), validation.LabelValueMaxLength))}
}

func validateAuthentication(a *Authentication, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if a.CacheTTL != nil && a.CacheTTL.Duration < 0 {
		errs = append(errs, field.Invalid(fld.Child("cacheTTL"), a.CacheTTL.Duration.String(), "must not be negative"))
	}
	names := sets.New[string]()
	for i := range a.Modules {
		errs = append(errs, validateModule(&a.Modules[i], fld.Child("modules").Index(i), names, false)...)
	}
	return errs
}

func validateAuthorization(a *Authorization, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	if a.CacheTTL != nil && a.CacheTTL.Duration < 0 {
		errs = append(errs, field.Invalid(fld.Child("cacheTTL"), a.CacheTTL.Duration.String(), "must not be negative"))
	}
	seen := sets.New[string]()
	for i, c := range a.Chain {
		switch {
		case !authorizationChainNames.Has(c):
			errs = append(errs, field.NotSupported(fld.Child("chain").Index(i), c, sets.List(authorizationChainNames)))
		case seen.Has(c):
			errs = append(errs, field.Duplicate(fld.Child("chain").Index(i), c))
		}
		seen.Insert(c)
	}
	if len(a.Chain) > 0 && len(a.Modules) > 0 && !seen.Has(WASM) {
		errs = append(errs, field.Invalid(fld.Child("chain"), a.Chain, "modules are listed but the chain has no "+WASM+" entry to place them; add "+WASM+" (anywhere: the modules are asked at its place)"))
	}
	names := sets.New[string]()
	for i := range a.Modules {
		m := &a.Modules[i]
		p := fld.Child("modules").Index(i)
		errs = append(errs, validateModule(&m.Module, p, names, false)...)
		if !authzFailurePolicies.Has(m.FailurePolicy) {
			errs = append(errs, field.NotSupported(p.Child("failurePolicy"), m.FailurePolicy, []string{"NoOpinion", "Deny"}))
		}
	}
	return errs
}

func validateAdmission(a *Admission, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := sets.New[string]()
	for i := range a.Modules {
		m := &a.Modules[i]
		p := fld.Child("modules").Index(i)
		errs = append(errs, validateModule(&m.Module, p, names, m.Type == TypeKubewarden)...)
		if !admissionFailurePolices.Has(m.FailurePolicy) {
			errs = append(errs, field.NotSupported(p.Child("failurePolicy"), m.FailurePolicy, []string{"Fail", "Ignore"}))
		}
		if !admissionTypes.Has(m.Type) {
			errs = append(errs, field.NotSupported(p.Child("type"), m.Type, []string{TypeEnvelope, TypeKubewarden}))
		}
		if !executionModes.Has(m.ExecutionMode) {
			errs = append(errs, field.NotSupported(p.Child("executionMode"), m.ExecutionMode, sets.List(executionModes.Clone().Delete(""))))
		} else if m.ExecutionMode != "" && m.Type != TypeKubewarden {
			errs = append(errs, field.Invalid(p.Child("executionMode"), m.ExecutionMode, "applies to type: kubewarden only"))
		}
		if m.Entrypoint != "" && m.Type != TypeKubewarden {
			errs = append(errs, field.Invalid(p.Child("entrypoint"), m.Entrypoint, "applies to Rego policies (type: kubewarden, executionMode opa or gatekeeper) only"))
		}
		if !admissionModes.Has(m.Mode) {
			errs = append(errs, field.NotSupported(p.Child("mode"), m.Mode, []string{"protect", "monitor"}))
		}
		errs = append(errs, validateRules(m.Rules, p.Child("rules"))...)
		for j, mc := range m.MatchConditions {
			if mc.Name == "" || mc.Expression == "" {
				errs = append(errs, field.Required(p.Child("matchConditions").Index(j), "each match condition has a name and a CEL expression"))
			}
		}
	}
	return errs
}

func validateRules(rules []admissionregistrationv1.RuleWithOperations, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, r := range rules {
		p := fld.Index(i)
		if len(r.Operations) == 0 {
			errs = append(errs, field.Required(p.Child("operations"), "e.g. [CREATE, UPDATE]"))
		}
		for j, op := range r.Operations {
			if !operations.Has(string(op)) {
				errs = append(errs, field.NotSupported(p.Child("operations").Index(j), op, sets.List(operations)))
			}
		}
		for name, list := range map[string][]string{"apiGroups": r.APIGroups, "apiVersions": r.APIVersions, "resources": r.Resources} {
			if len(list) == 0 {
				errs = append(errs, field.Required(p.Child(name), `use ["*"] for all`))
			}
		}
		if r.Scope != nil {
			switch *r.Scope {
			case admissionregistrationv1.ClusterScope, admissionregistrationv1.NamespacedScope, admissionregistrationv1.AllScopes:
			default:
				errs = append(errs, field.NotSupported(p.Child("scope"), *r.Scope, []string{"Cluster", "Namespaced", "*"}))
			}
		}
	}
	return errs
}

// DefaultModuleName is the name of a module whose entry names none: its file's base name without
// the extension, or NAME of builtin:NAME. Names label metrics, audit annotations and errors.
func DefaultModuleName(ref string) string {
	if IsRemoteModule(ref) {
		// registry://HOST/REPO/NAME:TAG, …/NAME@sha256:…, https://HOST/PATH/NAME.wasm?QUERY
		ref, _, _ = strings.Cut(ref, "?")
		ref, _, _ = strings.Cut(ref, "@")
		if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
			ref = ref[:i]
		}
	}
	base := path.Base(strings.TrimPrefix(ref, BuiltinPrefix))
	return strings.TrimSuffix(base, path.Ext(base))
}

// validateSource checks a module's source and pin: https:// needs a pin, http:// is refused.
func validateSource(m *Module, fld *field.Path) field.ErrorList {
	var errs field.ErrorList
	scheme, _, hasScheme := strings.Cut(m.Module, "://")
	switch {
	case hasScheme && scheme != strings.ToLower(scheme) && IsRemoteModule(strings.ToLower(scheme)+"://"):
		errs = append(errs, field.Invalid(fld.Child("module"), m.Module, "write the scheme in lower case (https://, registry://, oci://)"))
	case strings.HasPrefix(m.Module, "http://"):
		errs = append(errs, field.Invalid(fld.Child("module"), m.Module, "use https:// (a module fetched over plain HTTP could be changed on its way), or a registry:// reference"))
	case strings.HasPrefix(m.Module, "https://") && m.SHA256 == "":
		errs = append(errs, field.Required(fld.Child("sha256"), "a module fetched over https needs its digest pinned (sha256sum FILE, or wasmkube module pull URL prints it): a URL's content can change"))
	}
	if m.SHA256 != "" && !sha256Pin.MatchString(m.SHA256) {
		errs = append(errs, field.Invalid(fld.Child("sha256"), m.SHA256, "must be sha256:HEX (64 lower-case hex digits)"))
	}
	return errs
}

func validateModule(m *Module, fld *field.Path, names sets.Set[string], kubewarden bool) field.ErrorList {
	var errs field.ErrorList
	if m.Module == "" {
		errs = append(errs, field.Required(fld.Child("module"), "a path to a .wasm file or builtin:NAME"))
	} else if strings.HasPrefix(m.Module, BuiltinPrefix) && strings.TrimPrefix(m.Module, BuiltinPrefix) == "" {
		errs = append(errs, field.Invalid(fld.Child("module"), m.Module, "builtin: needs a module name, e.g. builtin:magic-authn"))
	}
	errs = append(errs, validateSource(m, fld)...)
	if m.Name == "" && m.Module != "" {
		if m.Name = DefaultModuleName(m.Module); m.Name == "" {
			errs = append(errs, field.Required(fld.Child("name"), "the module's file name ("+path.Base(m.Module)+") gives no name to default to; set one"))
		}
	}
	if m.Name != "" {
		if msgs := validation.IsDNS1123Subdomain(m.Name); len(msgs) > 0 {
			errs = append(errs, field.Invalid(fld.Child("name"), m.Name, strings.Join(msgs, "; ")))
		} else if names.Has(m.Name) {
			errs = append(errs, field.Duplicate(fld.Child("name"), m.Name))
		}
		names.Insert(m.Name)
	}
	if m.Timeout != nil && (m.Timeout.Duration <= 0 || m.Timeout.Duration > MaxModuleTimeout) {
		errs = append(errs, field.Invalid(fld.Child("timeout"), m.Timeout.Duration.String(), "must be more than 0 and at most 30s"))
	}
	if m.MemoryLimit != "" {
		q, err := resource.ParseQuantity(m.MemoryLimit)
		if err != nil || q.Sign() <= 0 {
			errs = append(errs, field.Invalid(fld.Child("memoryLimit"), m.MemoryLimit, "must be a positive quantity such as 64Mi"))
		}
	}
	if !isolations.Has(m.Isolation) {
		errs = append(errs, field.NotSupported(fld.Child("isolation"), m.Isolation, []string{"pooled", "fresh"}))
	}
	if m.PoolSize != nil && *m.PoolSize < 1 {
		errs = append(errs, field.Invalid(fld.Child("poolSize"), *m.PoolSize, "must be at least 1"))
	}
	if g := m.Grants; g != nil {
		for i, d := range g.ReadOnlyDirs {
			p := fld.Child("grants", "readOnlyDirs").Index(i)
			if d.HostPath == "" {
				errs = append(errs, field.Required(p.Child("hostPath"), "the host directory to mount"))
			}
			if !path.IsAbs(d.GuestPath) {
				errs = append(errs, field.Invalid(p.Child("guestPath"), d.GuestPath, "must be an absolute path such as /data"))
			}
		}
		errs = append(errs, validatePolicyGrants(g, fld.Child("grants"), kubewarden)...)
	}
	return errs
}

// hostCapabilityNamespaces are the namespaces of Kubewarden's host calls; the operations are
// checked against the host's list when the policy loads.
var hostCapabilityNamespaces = sets.New("tracing", "kubernetes", "net", "crypto", "oci")

// validatePolicyGrants checks the grants that only Kubewarden policies take.
func validatePolicyGrants(g *Grants, fld *field.Path, kubewarden bool) field.ErrorList {
	var errs field.ErrorList
	if !kubewarden {
		if len(g.ContextAwareResources) > 0 {
			errs = append(errs, field.Forbidden(fld.Child("contextAwareResources"), "applies to admission modules of type: kubewarden only"))
		}
		if len(g.HostCapabilities) > 0 {
			errs = append(errs, field.Forbidden(fld.Child("hostCapabilities"), "applies to admission modules of type: kubewarden only"))
		}
		return errs
	}
	seen := sets.New[ContextAwareResource]()
	for i, r := range g.ContextAwareResources {
		p := fld.Child("contextAwareResources").Index(i)
		if gv, err := schema.ParseGroupVersion(r.APIVersion); err != nil || len(validation.IsDNS1035Label(gv.Version)) > 0 {
			errs = append(errs, field.Invalid(p.Child("apiVersion"), r.APIVersion, "must be group/version, or v1 for the core group, e.g. networking.k8s.io/v1"))
		}
		if r.Kind == "" {
			errs = append(errs, field.Required(p.Child("kind"), "the kind to read, e.g. Ingress"))
		}
		if seen.Has(r) {
			errs = append(errs, field.Duplicate(p, r.APIVersion+" "+r.Kind))
		}
		seen.Insert(r)
	}
	for i, c := range g.HostCapabilities {
		ns, _, _ := strings.Cut(c, "/")
		if c != "*" && (!strings.Contains(c, "/") || !hostCapabilityNamespaces.Has(ns)) {
			errs = append(errs, field.Invalid(fld.Child("hostCapabilities").Index(i), c,
				`must be "*" or "namespace/operation" with namespace kubernetes, net, crypto, oci or tracing, e.g. kubernetes/can_i or net/*`))
		}
	}
	return errs
}
