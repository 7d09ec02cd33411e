package wasmkube

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
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
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/hook"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/metrics"
)

// DefaultAuthnCacheTTL is how long a module's successful authentication is cached.
const DefaultAuthnCacheTTL = 10 * time.Second

// DefaultAuthzCacheTTL is how long the authorization modules' decisions are cached.
const DefaultAuthzCacheTTL = 10 * time.Second

// ModuleCacheDir is where compiled modules are kept across restarts.
func ModuleCacheDir() string { return filepath.Join(xdg.CacheHome, "wasmkube", "modules") }

// clusterModules are the modules of one cluster and the runtime that hosts them.
type clusterModules struct {
	rt *wasm.Runtime
	// builtin holds the built-in modules (builtin:NAME), NAME/NAME.wasm.
	builtin fs.FS
	// closers close the loaded modules and policies (under mu: modules load in parallel).
	mu      sync.Mutex
	closers []func() error
}

// track remembers how to close a loaded module.
func (cm *clusterModules) track(close func() error) {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	cm.closers = append(cm.closers, close)
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
func loadAdmission(ctx context.Context, rt *wasm.Runtime, builtin fs.FS, p *profiles.Loaded, e entry[profiles.AdmissionModule], kube *hook.KubernetesHost, logger *slog.Logger) (loadedAdmission, error) {
	m := e.m
	bin, err := moduleBytes(builtin, p.ResolvePath, m.Module.Module)
	if err != nil {
		return loadedAdmission{}, fmt.Errorf("%s: %w", e.where, err)
	}
	am := hook.AdmissionModule{
		Mutating: m.IsMutating(), Rules: m.Rules,
		FailurePolicy:     admissionregistrationv1.FailurePolicyType(m.FailurePolicy),
		NamespaceSelector: m.NamespaceSelector, ObjectSelector: m.ObjectSelector,
		MatchConditions: m.MatchConditions, Monitor: m.Mode == "monitor", Message: m.Message,
	}
	if m.Type != profiles.TypeKubewarden {
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
func checkGrants(builtin fs.FS, p *profiles.Loaded, w profiles.ModulePlan) error {
	c, err := collectModules(p, w)
	if err != nil {
		return err
	}
	for _, e := range c.admission {
		if e.m.Type != profiles.TypeKubewarden {
			continue
		}
		bin, err := moduleBytes(builtin, p.ResolvePath, e.m.Module.Module)
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
func collectModules(p *profiles.Loaded, w profiles.ModulePlan) (*configuredModules, error) {
	c := &configuredModules{}
	c.addProfile(p)
	if err := c.addOriginalFiles(w); err != nil {
		return nil, err
	}
	if len(c.authz) > 0 && !slices.Contains(w.AuthorizationChain, profiles.WASM) {
		return nil, fmt.Errorf("authorization modules are configured, but the authorizer chain %s has no %s: add %[2]s to authorization.chain in the profile (or to --authorization-mode)",
			strings.Join(w.AuthorizationChain, ","), profiles.WASM)
	}
	for _, names := range [][]namedEntry{names(c.authn, func(m profiles.Module) string { return m.Name }),
		names(c.authz, func(m profiles.AuthorizationModule) string { return m.Name }),
		names(c.admission, func(m profiles.AdmissionModule) string { return m.Name })} {
		if err := uniqueNames(names); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// addProfile adds the profile's module entries.
func (c *configuredModules) addProfile(p *profiles.Loaded) {
	where := func(field string, i int, name string) string {
		return fmt.Sprintf("profile %s: %s.modules[%d] (%s)", p.Name, field, i, name)
	}
	if a := p.Authentication; a != nil {
		for i, m := range a.Modules {
			c.authn = append(c.authn, entry[profiles.Module]{where("authentication", i, m.Name), m})
		}
	}
	if a := p.Authorization; a != nil {
		for i, m := range a.Modules {
			c.authz = append(c.authz, entry[profiles.AuthorizationModule]{where("authorization", i, m.Name), m})
		}
	}
	if a := p.Admission; a != nil {
		for i, m := range a.Modules {
			c.admission = append(c.admission, entry[profiles.AdmissionModule]{where("admission", i, m.Name), m})
		}
	}
}

// fromFile says where an entry of an original config file is, for errors.
func fromFile(flag, file string, i int, name string) string {
	return fmt.Sprintf("%s %s: modules[%d] (%s)", flag, file, i, name)
}

// addOriginalFiles adds the entries of the original proof of concept's config files.
func (c *configuredModules) addOriginalFiles(w profiles.ModulePlan) error {
	if f := w.AuthenticationConfigFile; f != "" {
		list, err := profiles.LoadModuleList(f, profiles.HookAuthentication)
		if err != nil {
			return fmt.Errorf("--%s: %w", profiles.FlagAuthenticationConfig, err)
		}
		for i, m := range list.Modules {
			c.authn = append(c.authn, entry[profiles.Module]{fromFile("--"+profiles.FlagAuthenticationConfig, f, i, m.Name), m.Module})
		}
	}
	if f := w.AuthorizationConfigFile; f != "" {
		list, err := profiles.LoadModuleList(f, profiles.HookAuthorization)
		if err != nil {
			return fmt.Errorf("--%s: %w", profiles.FlagAuthorizationConfig, err)
		}
		for i, m := range list.Modules {
			am := profiles.AuthorizationModule{Module: m.Module, FailurePolicy: m.FailurePolicy}
			c.authz = append(c.authz, entry[profiles.AuthorizationModule]{fromFile("--"+profiles.FlagAuthorizationConfig, f, i, m.Name), am})
		}
	}
	return c.addAdmissionConfig(w)
}

// addAdmissionConfig adds the modules of the WASM plugin's entry in
// --admission-control-config-file, which must then be enabled.
func (c *configuredModules) addAdmissionConfig(w profiles.ModulePlan) error {
	f := w.AdmissionConfigFile
	if f == "" {
		return nil
	}
	list, found, err := profiles.LoadAdmissionConfigModules(f, profiles.WASM)
	switch {
	case err != nil:
		return fmt.Errorf("--admission-control-config-file: %w", err)
	case !found:
		return nil
	case !w.AdmissionEnabled:
		return fmt.Errorf("--admission-control-config-file %s configures the %s plugin, but --enable-admission-plugins does not enable it: add %[2]s there", f, profiles.WASM)
	}
	for i, m := range list.Modules {
		c.admission = append(c.admission, entry[profiles.AdmissionModule]{fromFile("--admission-control-config-file", f, i, m.Name), m})
	}
	return nil
}

// namedEntry is a module's name and where its entry is.
type namedEntry struct{ where, name string }

func names[T any](entries []entry[T], name func(T) string) []namedEntry {
	out := make([]namedEntry, len(entries))
	for i, e := range entries {
		out[i] = namedEntry{where: e.where, name: name(e.m)}
	}
	return out
}

// uniqueNames checks that no module name is used twice for one hook: names label metrics, audit
// annotations and errors.
func uniqueNames(entries []namedEntry) error {
	seen := map[string]string{}
	for _, e := range entries {
		if first, ok := seen[e.name]; ok {
			return fmt.Errorf("%s: the module name %q is already used by %s; give one of them another name", e.where, e.name, first)
		}
		seen[e.name] = e.where
	}
	return nil
}

// loadModules compiles and pre-warms the configured modules and returns the API server
// extensions that run them: collect the entries, load them, build the extensions. Nothing is
// loaded when no module is configured. Errors name the profile entry or config file.
func loadModules(ctx context.Context, builtin fs.FS, p *profiles.Loaded, w profiles.ModulePlan, cacheDir string, logger *slog.Logger) (_ *clusterModules, _ apiserver.Extensions, _ *hook.Admission, err error) {
	var ext apiserver.Extensions
	c, err := collectModules(p, w)
	if err != nil || c.empty() {
		return nil, ext, nil, err
	}
	rt, err := wasm.NewRuntime(ctx, wasm.RuntimeConfig{CacheDir: cacheDir, Observer: metrics.Registered(), Logger: logger})
	if err != nil {
		return nil, ext, nil, err
	}
	cm := &clusterModules{rt: rt, builtin: builtin}
	defer func() {
		if err != nil {
			_ = cm.close()
		}
	}()
	// The runtime serves both ABIs: every module may import the waPC host (as before the split
	// by ABI), whichever is loaded first.
	if err := kubewarden.DefineHosts(ctx, rt); err != nil {
		return nil, ext, nil, err
	}
	l, err := cm.load(ctx, p, c, logger)
	if err != nil {
		return nil, ext, nil, err
	}
	ext, adm, err := l.build(p, logger)
	if err != nil {
		return nil, ext, nil, err
	}
	return cm, ext, adm, nil
}

// loadedModules are the loaded modules of each hook, in the order of their entries.
type loadedModules struct {
	authn     []hook.Module
	authz     []hook.AuthzModule
	admission []hook.AdmissionModule
	kube      *hook.KubernetesHost
}

// load loads the entries of c into cm's runtime. Modules compile in parallel (a cold compile
// takes ~0.5 s per Go module); each result keeps its entry's place, so the order of the
// profile holds.
func (cm *clusterModules) load(ctx context.Context, p *profiles.Loaded, c *configuredModules, logger *slog.Logger) (*loadedModules, error) {
	l := &loadedModules{authn: make([]hook.Module, len(c.authn)), authz: make([]hook.AuthzModule, len(c.authz)),
		admission: make([]hook.AdmissionModule, len(c.admission)), kube: hook.NewKubernetesHost()}
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
	for i, e := range c.authn {
		start(func() (err error) {
			l.authn[i], err = cm.loadModule(ctx, p, e.where, e.m, envelope.ExportAuthn)
			return err
		})
	}
	for i, e := range c.authz {
		start(func() error {
			hm, err := cm.loadModule(ctx, p, e.where, e.m.Module, envelope.ExportAuthz)
			l.authz[i] = hook.AuthzModule{Module: hm, FailurePolicy: hook.FailurePolicy(e.m.FailurePolicy)}
			return err
		})
	}
	for i, e := range c.admission {
		start(func() error {
			m, err := loadAdmission(ctx, cm.rt, cm.builtin, p, e, l.kube, logger)
			if err != nil {
				return err
			}
			cm.track(m.close)
			l.admission[i] = m.AdmissionModule
			return nil
		})
	}
	return l, g.Wait()
}

// loadModule loads one module of the envelope ABI for export.
func (cm *clusterModules) loadModule(ctx context.Context, p *profiles.Loaded, where string, m profiles.Module, export string) (hook.Module, error) {
	bin, err := moduleBytes(cm.builtin, p.ResolvePath, m.Module)
	if err != nil {
		return hook.Module{}, fmt.Errorf("%s: %w", where, err)
	}
	loaded, err := cm.rt.Load(ctx, bin, moduleConfig(p, m, export))
	if err != nil {
		return hook.Module{}, fmt.Errorf("%s: %w", where, err)
	}
	cm.track(func() error { return loaded.Close(context.Background()) })
	return hook.Module{Module: loaded, Settings: m.Settings}, nil
}

// build makes the API server extensions and the admission plugin of the loaded modules.
func (l *loadedModules) build(p *profiles.Loaded, logger *slog.Logger) (ext apiserver.Extensions, adm *hook.Admission, err error) {
	if len(l.authn) > 0 {
		a := &hook.TokenAuthenticator{Logger: logger, Modules: l.authn}
		ttl := DefaultAuthnCacheTTL
		if p.Authentication != nil && p.Authentication.CacheTTL != nil {
			ttl = p.Authentication.CacheTTL.Duration
		}
		ext.Token = a
		if ttl > 0 {
			ext.Token = cache.New(a, false, ttl, 0)
		}
	}
	if len(l.authz) > 0 {
		a := &hook.Authorizer{Logger: logger, Modules: l.authz, CacheTTL: DefaultAuthzCacheTTL}
		if p.Authorization != nil && p.Authorization.CacheTTL != nil {
			a.CacheTTL = p.Authorization.CacheTTL.Duration
		}
		ext.Authorizer, ext.RuleResolver = a, a
	}
	if len(l.admission) > 0 {
		if adm, err = hook.NewAdmission(l.admission, logger, l.kube); err != nil {
			return ext, nil, err
		}
	}
	return ext, adm, nil
}

// moduleBytes reads a module: builtin:NAME from builtin (NAME/NAME.wasm, see
// Options.BuiltinModules), or a file, its path made absolute by resolve (relative to the
// profile or the test suite).
func moduleBytes(builtin fs.FS, resolve func(string) string, ref string) ([]byte, error) {
	name, ok := strings.CutPrefix(ref, profiles.BuiltinPrefix)
	if !ok {
		bin, err := os.ReadFile(resolve(ref))
		if err != nil {
			return nil, fmt.Errorf("read module: %w", err)
		}
		return bin, nil
	}
	if builtin == nil {
		return nil, fmt.Errorf("%s: the built-in modules were not provided: set Options.BuiltinModules "+
			"(the wasmkube command passes examples.FS()), or name the module's .wasm file instead", ref)
	}
	bin, err := fs.ReadFile(builtin, name+"/"+name+".wasm")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no built-in module %q; built in: %s", name, strings.Join(builtinNames(builtin), ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("read built-in module %q: %w", name, err)
	}
	return bin, nil
}

// builtinNames lists the modules of builtin (NAME/NAME.wasm), sorted.
func builtinNames(builtin fs.FS) []string {
	matches, _ := fs.Glob(builtin, "*/*.wasm") // the pattern is valid
	var names []string
	for _, m := range matches {
		dir, file := path.Split(m)
		if name := strings.TrimSuffix(file, ".wasm"); dir == name+"/" {
			names = append(names, name)
		}
	}
	return names
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
