package wasmkube

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/adrg/xdg"
	"golang.org/x/sync/errgroup"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apiserver/pkg/authentication/token/cache"
	"sigs.k8s.io/yaml"

	"github.com/wasmkube/wasmkube/apiserver"
	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/hook"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/metrics"
)

// DefaultAuthnCacheTTL is how long a module's successful authentication is cached.
const DefaultAuthnCacheTTL = 10 * time.Second

// ModuleCacheDir is where compiled modules are kept across restarts.
func ModuleCacheDir() string { return filepath.Join(xdg.CacheHome, "wasmkube", "modules") }

// clusterModules are the modules of one cluster and the runtime that hosts them.
type clusterModules struct {
	rt *wasm.Runtime
	// closers close the loaded modules and policies.
	closers []func() error
}

func (cm *clusterModules) close() error {
	for _, c := range cm.closers {
		_ = c()
	}
	return cm.rt.Close(context.Background())
}

// count is how many modules were loaded.
func (cm *clusterModules) count() int { return len(cm.closers) }

// loadedAdmission is an admission module ready for the plugin.
type loadedAdmission struct {
	hook.AdmissionModule
	close func() error
}

// loadAdmission loads one admission entry: a module of the original ABI, or a Kubewarden policy
// whose metadata gives rules and mutating when the entry does not.
func loadAdmission(ctx context.Context, rt *wasm.Runtime, p *profiles.Loaded, e entry[profiles.AdmissionModule], kube *hook.KubernetesHost, logger *slog.Logger) (loadedAdmission, error) {
	m := e.m
	bin, err := moduleBytes(p, m.Module.Module)
	if err != nil {
		return loadedAdmission{}, fmt.Errorf("%s: %w", e.where, err)
	}
	am := hook.AdmissionModule{
		Mutating: m.IsMutating(), Rules: m.Rules,
		FailurePolicy:     admissionregistrationv1.FailurePolicyType(m.FailurePolicy),
		NamespaceSelector: m.NamespaceSelector, ObjectSelector: m.ObjectSelector,
		MatchConditions: m.MatchConditions, Monitor: m.Mode == "monitor", Message: m.Message,
	}
	if m.Type != "kubewarden" {
		loaded, err := rt.Load(ctx, bin, moduleConfig(p, m.Module, envelope.ExportValidate))
		if err != nil {
			return loadedAdmission{}, fmt.Errorf("%s: %w", e.where, err)
		}
		am.Admitter = hook.Envelope(hook.Module{Module: loaded, Settings: m.Settings})
		return loadedAdmission{am, func() error { return loaded.Close(context.Background()) }}, nil
	}
	grants := policyGrants(m.Grants)
	if err := checkPolicyGrants(e.where, bin, grants); err != nil {
		return loadedAdmission{}, err
	}
	policy, err := kubewarden.Load(ctx, rt, bin, kubewarden.PolicyConfig{
		Module: moduleConfig(p, m.Module, ""), Mode: kubewarden.ExecutionMode(m.ExecutionMode),
		Settings: m.Settings, Kubernetes: kube.ForPolicy(m.Name, grants), Grants: grants, Logger: logger,
	})
	if err != nil {
		return loadedAdmission{}, fmt.Errorf("%s: %w", e.where, err)
	}
	md := policy.Metadata()
	if m.Mutating == nil {
		am.Mutating = md.Mutating
	}
	if len(am.Rules) == 0 {
		am.Rules = md.Rules
	}
	if len(am.Rules) == 0 {
		_ = policy.Close(context.Background())
		return loadedAdmission{}, fmt.Errorf("%s: the policy has no rules in its metadata and the entry names none: add rules (or annotate the policy)", e.where)
	}
	am.Admitter = policy
	return loadedAdmission{am, func() error { return policy.Close(context.Background()) }}, nil
}

// policyGrants are what a Kubewarden policy's entry grants it.
func policyGrants(g *profiles.Grants) kubewarden.PolicyGrants {
	if g == nil {
		return kubewarden.PolicyGrants{}
	}
	out := kubewarden.PolicyGrants{HostCapabilities: g.HostCapabilities}
	for _, r := range g.ContextAwareResources {
		out.ContextAwareResources = append(out.ContextAwareResources, kubewarden.ContextAwareResource{APIVersion: r.APIVersion, Kind: r.Kind})
	}
	return out
}

// checkPolicyGrants refuses a Kubewarden policy (bin) whose metadata asks for more than its
// entry (where) grants, with the profile lines that would grant it, and a granted host
// capability that names no host call.
func checkPolicyGrants(where string, bin []byte, g kubewarden.PolicyGrants) error {
	for i, c := range g.HostCapabilities {
		if err := kubewarden.CheckCapabilityPattern(c); err != nil {
			return fmt.Errorf("%s: grants.hostCapabilities[%d]: %w", where, i, err)
		}
	}
	md, _, err := kubewarden.ReadMetadata(bin)
	if err != nil || md == nil {
		return nil // no metadata asks for nothing; unreadable metadata fails the load with its own error
	}
	missing := md.Ungranted(g)
	if missing.Empty() {
		return nil
	}
	return fmt.Errorf("%s: the policy's metadata asks for more than its entry grants (a policy gets only what its entry grants).\n"+
		"If you trust it with that, add these lines to its entry (merging with any grants it has):\n%s", where, grantLines(missing))
}

// grantLines are the profile lines that grant g, indented for an entry of a module list.
func grantLines(g kubewarden.PolicyGrants) string {
	var grants profiles.Grants
	for _, r := range g.ContextAwareResources {
		grants.ContextAwareResources = append(grants.ContextAwareResources, profiles.ContextAwareResource{APIVersion: r.APIVersion, Kind: r.Kind})
	}
	grants.HostCapabilities = g.HostCapabilities
	doc, err := yaml.Marshal(map[string]profiles.Grants{"grants": grants})
	if err != nil {
		return fmt.Sprintf("    grants: %+v\n", grants)
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(strings.TrimSuffix(string(doc), "\n"), "\n") {
		b.WriteString("    " + line)
	}
	return b.String()
}

// checkGrants refuses, before anything starts, the Kubewarden policies configured for the plan
// (profile and config files) that ask for more than their entries grant.
func checkGrants(p *profiles.Loaded, w apiserver.WASMPlan) error {
	c, err := collectModules(p, w)
	if err != nil {
		return err
	}
	for _, e := range c.admission {
		if e.m.Type != "kubewarden" {
			continue
		}
		bin, err := moduleBytes(p, e.m.Module.Module)
		if err != nil {
			return fmt.Errorf("%s: %w", e.where, err)
		}
		if err := checkPolicyGrants(e.where, bin, policyGrants(e.m.Grants)); err != nil {
			return err
		}
	}
	return nil
}

// entry is one module entry and where it was configured, for errors.
type entry[T any] struct {
	where string
	m     T
}

// configuredModules are a cluster's module entries: the profile's first, then those of the
// original proof of concept's config files.
type configuredModules struct {
	authn     []entry[profiles.Module]
	authz     []entry[profiles.AuthorizationModule]
	admission []entry[profiles.AdmissionModule]
}

func (c *configuredModules) empty() bool {
	return len(c.authn) == 0 && len(c.authz) == 0 && len(c.admission) == 0
}

// collectModules gathers the module entries of the profile and of the config files the plan
// names, and checks that they fit the plan: unique names per hook, a WASM place in the
// authorizer chain, an enabled admission plugin.
func collectModules(p *profiles.Loaded, w apiserver.WASMPlan) (*configuredModules, error) {
	c := &configuredModules{}
	fromProfile := func(field string, i int, name string) string {
		return fmt.Sprintf("profile %s: %s.modules[%d] (%s)", p.Name, field, i, name)
	}
	fromFile := func(flag, file string, i int, name string) string {
		return fmt.Sprintf("%s %s: modules[%d] (%s)", flag, file, i, name)
	}
	if a := p.Authentication; a != nil {
		for i, m := range a.Modules {
			c.authn = append(c.authn, entry[profiles.Module]{fromProfile("authentication", i, m.Name), m})
		}
	}
	if a := p.Authorization; a != nil {
		for i, m := range a.Modules {
			c.authz = append(c.authz, entry[profiles.AuthorizationModule]{fromProfile("authorization", i, m.Name), m})
		}
	}
	if a := p.Admission; a != nil {
		for i, m := range a.Modules {
			c.admission = append(c.admission, entry[profiles.AdmissionModule]{fromProfile("admission", i, m.Name), m})
		}
	}
	if f := w.AuthenticationConfigFile; f != "" {
		list, err := profiles.LoadModuleList(f, profiles.HookAuthentication)
		if err != nil {
			return nil, fmt.Errorf("--authentication-wasm-config-file: %w", err)
		}
		for i, m := range list.Modules {
			c.authn = append(c.authn, entry[profiles.Module]{fromFile("--authentication-wasm-config-file", f, i, m.Name), m.Module})
		}
	}
	if f := w.AuthorizationConfigFile; f != "" {
		list, err := profiles.LoadModuleList(f, profiles.HookAuthorization)
		if err != nil {
			return nil, fmt.Errorf("--authorization-wasm-config-file: %w", err)
		}
		for i, m := range list.Modules {
			am := profiles.AuthorizationModule{Module: m.Module, FailurePolicy: m.FailurePolicy}
			c.authz = append(c.authz, entry[profiles.AuthorizationModule]{fromFile("--authorization-wasm-config-file", f, i, m.Name), am})
		}
	}
	if f := w.AdmissionConfigFile; f != "" {
		list, found, err := profiles.LoadAdmissionConfigModules(f, hook.AdmissionPluginName)
		if err != nil {
			return nil, fmt.Errorf("--admission-control-config-file: %w", err)
		}
		if found && !w.AdmissionEnabled {
			return nil, fmt.Errorf("--admission-control-config-file %s configures the %s plugin, but --enable-admission-plugins does not enable it: add %s there", f, hook.AdmissionPluginName, hook.AdmissionPluginName)
		}
		if found {
			for i, m := range list.Modules {
				c.admission = append(c.admission, entry[profiles.AdmissionModule]{fromFile("--admission-control-config-file", f, i, m.Name), m})
			}
		}
	}
	if len(c.authz) > 0 && !slices.Contains(w.AuthorizationChain, hook.AdmissionPluginName) {
		return nil, fmt.Errorf("authorization modules are configured, but the authorizer chain %s has no WASM: add WASM to authorization.chain in the profile (or to --authorization-mode)", strings.Join(w.AuthorizationChain, ","))
	}
	for _, names := range [][]string{names(c.authn, func(m profiles.Module) string { return m.Name }),
		names(c.authz, func(m profiles.AuthorizationModule) string { return m.Name }),
		names(c.admission, func(m profiles.AdmissionModule) string { return m.Name })} {
		if err := uniqueNames(names); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func names[T any](entries []entry[T], name func(T) string) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.where + "\x00" + name(e.m)
	}
	return out
}

// uniqueNames checks that no module name is used twice for one hook: names label metrics, audit
// annotations and errors.
func uniqueNames(tagged []string) error {
	seen := map[string]string{}
	for _, t := range tagged {
		where, name, _ := strings.Cut(t, "\x00")
		if first, ok := seen[name]; ok {
			return fmt.Errorf("%s: the module name %q is already used by %s; give one of them another name", where, name, first)
		}
		seen[name] = where
	}
	return nil
}

// loadModules compiles and pre-warms the configured modules and returns the API server
// extensions that run them. Nothing is loaded when no module is configured. Errors name the
// profile entry or config file.
func loadModules(ctx context.Context, p *profiles.Loaded, w apiserver.WASMPlan, cacheDir string, logger *slog.Logger) (_ *clusterModules, _ apiserver.Extensions, _ *hook.Admission, err error) {
	var ext apiserver.Extensions
	c, err := collectModules(p, w)
	if err != nil || c.empty() {
		return nil, ext, nil, err
	}
	rt, err := wasm.NewRuntime(ctx, wasm.RuntimeConfig{CacheDir: cacheDir, Observer: metrics.Registered(), Logger: logger})
	if err != nil {
		return nil, ext, nil, err
	}
	cm := &clusterModules{rt: rt}
	defer func() {
		if err != nil {
			_ = cm.close()
		}
	}()
	// The runtime serves both ABIs: every module may import the waPC host (as before the split
	// by ABI), whichever is loaded first. Modules load in parallel below.
	if err := kubewarden.DefineHosts(ctx, rt); err != nil {
		return nil, ext, nil, err
	}
	// Modules compile in parallel (a cold compile takes ~0.5 s per Go module); each result
	// keeps its entry's place, so the order of the profile holds.
	var mu sync.Mutex
	track := func(close func() error) {
		mu.Lock()
		defer mu.Unlock()
		cm.closers = append(cm.closers, close)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.NumCPU())
	start := func(job func() error) {
		g.Go(func() error {
			if gctx.Err() != nil { // another module failed: stop early
				return nil
			}
			return job()
		})
	}
	load := func(where string, m profiles.Module, export string) (hook.Module, error) {
		bin, err := moduleBytes(p, m.Module)
		if err != nil {
			return hook.Module{}, fmt.Errorf("%s: %w", where, err)
		}
		loaded, err := rt.Load(ctx, bin, moduleConfig(p, m, export))
		if err != nil {
			return hook.Module{}, fmt.Errorf("%s: %w", where, err)
		}
		track(func() error { return loaded.Close(context.Background()) })
		return hook.Module{Module: loaded, Settings: m.Settings}, nil
	}
	authn := make([]hook.Module, len(c.authn))
	for i, e := range c.authn {
		start(func() (err error) { authn[i], err = load(e.where, e.m, envelope.ExportAuthn); return err })
	}
	authz := make([]hook.AuthzModule, len(c.authz))
	for i, e := range c.authz {
		start(func() error {
			hm, err := load(e.where, e.m.Module, envelope.ExportAuthz)
			policy := hook.NoOpinion
			if e.m.FailurePolicy == "Deny" {
				policy = hook.Deny
			}
			authz[i] = hook.AuthzModule{Module: hm, FailurePolicy: policy}
			return err
		})
	}
	kube := hook.NewKubernetesHost()
	admissions := make([]hook.AdmissionModule, len(c.admission))
	for i, e := range c.admission {
		start(func() error {
			m, err := loadAdmission(ctx, rt, p, e, kube, logger)
			if err != nil {
				return err
			}
			track(m.close)
			admissions[i] = m.AdmissionModule
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, ext, nil, err
	}

	if len(authn) > 0 {
		a := &hook.TokenAuthenticator{Logger: logger, Modules: authn}
		ttl := DefaultAuthnCacheTTL
		if p.Authentication != nil && p.Authentication.CacheTTL != nil {
			ttl = p.Authentication.CacheTTL.Duration
		}
		ext.Token = a
		if ttl > 0 {
			ext.Token = cache.New(a, false, ttl, 0)
		}
	}
	if len(authz) > 0 {
		first, err := wasmFirst(w.AuthorizationChain)
		if err != nil {
			return nil, ext, nil, err
		}
		a := &hook.Authorizer{Logger: logger, Modules: authz}
		ext.Authorizer, ext.RuleResolver, ext.First = a, a, first
	}
	var adm *hook.Admission
	if len(admissions) > 0 {
		if adm, err = hook.NewAdmission(admissions, logger, kube); err != nil {
			return nil, ext, nil, err
		}
	}
	return cm, ext, adm, nil
}

// wasmFirst reports whether the modules come before the built-in authorizers.
func wasmFirst(chain []string) (bool, error) {
	for i, c := range chain {
		if c != "WASM" {
			continue
		}
		switch i {
		case 0:
			return true, nil
		case len(chain) - 1:
			return false, nil
		}
		return false, fmt.Errorf("the authorizer chain %s has WASM between built-in authorizers, which is not supported yet: put it first or last", strings.Join(chain, ","))
	}
	return false, nil
}

// moduleBytes reads a module: builtin:NAME from the binary, or a file relative to the profile.
func moduleBytes(p *profiles.Loaded, ref string) ([]byte, error) {
	if name, ok := strings.CutPrefix(ref, profiles.BuiltinPrefix); ok {
		if bin, ok := examples.Module(name); ok {
			return bin, nil
		}
		return nil, fmt.Errorf("no built-in module %q; built in: %s", name, strings.Join(examples.Names(), ", "))
	}
	bin, err := os.ReadFile(p.ResolvePath(ref))
	if err != nil {
		return nil, fmt.Errorf("read module: %w", err)
	}
	return bin, nil
}

func moduleConfig(p *profiles.Loaded, m profiles.Module, export string) wasm.ModuleConfig {
	cfg := wasm.ModuleConfig{Name: m.Name, Exports: []string{export}, Isolation: wasm.Isolation(m.Isolation), Debug: m.Debug}
	if m.Timeout != nil {
		cfg.Timeout = m.Timeout.Duration
	}
	if m.MemoryLimit != "" {
		if q, err := resource.ParseQuantity(m.MemoryLimit); err == nil { // validated with the profile
			cfg.MemoryLimit = q.Value()
		}
	}
	if m.PoolSize != nil {
		cfg.PoolSize = int(*m.PoolSize)
	}
	if g := m.Grants; g != nil {
		cfg.Grants = wasm.Grants{Env: g.Env, Args: g.Args}
		for _, d := range g.ReadOnlyDirs {
			cfg.Grants.ReadOnlyDirs = append(cfg.Grants.ReadOnlyDirs, wasm.DirMount{HostPath: p.ResolvePath(d.HostPath), GuestPath: d.GuestPath})
		}
	}
	return cfg
}
