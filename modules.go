package wasmkube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	"github.com/wasmkube/wasmkube/wasm/source"
)

// DefaultAuthnCacheTTL is how long a module's successful authentication is cached.
const DefaultAuthnCacheTTL = 10 * time.Second

// DefaultAuthzCacheTTL is how long the authorization modules' decisions are cached.
const DefaultAuthzCacheTTL = 10 * time.Second

// ModuleCacheDir is where compiled modules are kept across restarts.
func ModuleCacheDir() string { return filepath.Join(xdg.CacheHome, "wasmkube", "modules") }

// clusterModules are the modules of one cluster: the runtime that hosts them (made when the
// first module is loaded), the current generation the server's extensions ask (swapped by a
// reload), and the host of the Kubernetes policies.
type clusterModules struct {
	// modules reads the modules: built-in (builtin:NAME), files, and remote ones.
	modules  moduleReader
	cacheDir string
	logger   *slog.Logger
	live     *hook.Live
	kube     *hook.KubernetesHost
	// decisions records the modules' decisions (`wasmkube decisions`).
	decisions *hook.DecisionLog
	// chain is the authorizer chain the server was started with.
	chain []string

	mu     sync.Mutex // serializes loads (and the runtime's creation)
	rt     *wasm.Runtime
	shared sharedModules
}

// newClusterModules returns a cluster's modules with an empty generation.
func newClusterModules(modules moduleReader, cacheDir string, chain []string, logger *slog.Logger) *clusterModules {
	decisions := hook.NewDecisionLog(hook.DefaultDecisionLogSize)
	return &clusterModules{modules: modules, cacheDir: cacheDir, logger: logger, chain: chain, decisions: decisions,
		live: hook.NewLive(hook.Generation{}, logger, decisions), kube: hook.NewKubernetesHost()}
}

// runtime returns the modules' runtime, made on first use (under mu).
func (cm *clusterModules) runtime(ctx context.Context) (*wasm.Runtime, error) {
	if cm.rt != nil {
		return cm.rt, nil
	}
	rt, err := wasm.NewRuntime(ctx, wasm.RuntimeConfig{CacheDir: cm.cacheDir, Observer: metrics.Registered(), Logger: cm.logger})
	if err != nil {
		return nil, err
	}
	// The runtime serves both ABIs: every module may import the waPC host (as before the split
	// by ABI), whichever is loaded first.
	if err := kubewarden.DefineHosts(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	cm.rt = rt
	return rt, nil
}

// close closes the modules and the runtime, after the API server has stopped.
func (cm *clusterModules) close() error {
	err := cm.live.Close()
	cm.mu.Lock()
	defer cm.mu.Unlock()
	if cm.rt != nil {
		err = errors.Join(err, cm.rt.Close(context.Background()))
	}
	return err
}

// extensions returns what the API server gets, installed once whatever the modules: a token
// authenticator, an authorizer (when the chain has WASM's place) and the admission plugin, all
// asking the current generation.
func (cm *clusterModules) extensions() (apiserver.Extensions, *hook.Admission, error) {
	ext := apiserver.Extensions{Token: cm.live.Token()}
	if slices.Contains(cm.chain, profiles.WASM) {
		a := cm.live.Authorizer()
		ext.Authorizer, ext.RuleResolver = a, a
	}
	adm, err := hook.NewLiveAdmission(cm.live, cm.logger, cm.kube)
	return ext, adm, err
}

// load loads the modules of profile p and plan w and makes them the current generation; the one
// it replaces serves until then and closes after its last call. It returns how many modules the
// new generation has. On an error nothing changes. Errors name the profile entry or config file.
func (cm *clusterModules) load(ctx context.Context, p *profiles.Loaded, w profiles.ModulePlan) (int, error) {
	cm.mu.Lock()
	defer cm.mu.Unlock()
	c, err := collectModules(p, w)
	if err != nil {
		return 0, err
	}
	if !slices.Equal(w.AuthorizationChain, cm.chain) && len(c.authz) > 0 {
		return 0, fmt.Errorf("the authorizer chain changed (%s, running with %s): restart to change it",
			strings.Join(w.AuthorizationChain, ","), strings.Join(cm.chain, ","))
	}
	gen := hook.Generation{}
	n := 0
	if !c.empty() {
		rt, err := cm.runtime(ctx)
		if err != nil {
			return 0, err
		}
		var l *loadedModules
		if l, err = loadEntries(ctx, rt, &cm.shared, cm.modules, cm.kube, p, c, cm.logger); err != nil {
			return 0, err
		}
		gen, n = l.generation(p, cm.logger, cm.decisions), l.count()
	}
	return n, cm.live.Swap(gen)
}

// sharedModules are the loaded modules of the current generations, by what they were loaded
// from (sharedKey), so that a reload reuses the modules it does not change: it then costs what
// changed, not the whole profile (a Go module takes ~100 ms to decode and pre-warm even when its
// compiled code is cached). Each generation holds a reference; the last one closes the module.
type sharedModules struct {
	mu      sync.Mutex
	entries map[string]*sharedModule
}

type sharedModule struct {
	value any // hook.Module's *wasm.Module, or a loadedAdmission
	refs  int
	close func() error
}

// sharedKey identifies a load: the export (for modules of the envelope ABI), the module's
// bytes and its configuration; for a Kubewarden policy also its mode, settings and grants.
func sharedKey(bin []byte, cfg wasm.ModuleConfig, extra ...any) string {
	sum := sha256.Sum256(bin)
	desc, err := json.Marshal(append([]any{cfg}, extra...))
	if err != nil {
		return "" // not shared
	}
	return hex.EncodeToString(sum[:]) + string(desc)
}

// get returns the module loaded for key, or loads it; release drops the reference taken.
func (s *sharedModules) get(key string, load func() (any, func() error, error)) (_ any, release func() error, _ error) {
	if key != "" {
		s.mu.Lock()
		if e, ok := s.entries[key]; ok {
			e.refs++
			s.mu.Unlock()
			return e.value, s.releaser(key, e), nil
		}
		s.mu.Unlock()
	}
	v, closeFn, err := load()
	if err != nil || key == "" {
		return v, closeFn, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries == nil {
		s.entries = map[string]*sharedModule{}
	}
	if e, ok := s.entries[key]; ok { // loaded meanwhile by another entry: use that one
		_ = closeFn()
		e.refs++
		return e.value, s.releaser(key, e), nil
	}
	e := &sharedModule{value: v, refs: 1, close: closeFn}
	s.entries[key] = e
	return v, s.releaser(key, e), nil
}

func (s *sharedModules) releaser(key string, e *sharedModule) func() error {
	var once sync.Once
	return func() (err error) {
		once.Do(func() {
			s.mu.Lock()
			e.refs--
			last := e.refs == 0
			if last {
				delete(s.entries, key)
			}
			s.mu.Unlock()
			if last {
				err = e.close()
			}
		})
		return err
	}
}

// closers close the modules of one generation (under mu: modules load in parallel).
type closers struct {
	mu  sync.Mutex
	fns []func() error
}

func (c *closers) track(close func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, close)
}

func (c *closers) close() error {
	var errs []error
	for _, fn := range c.fns {
		errs = append(errs, fn())
	}
	return errors.Join(errs...)
}

// loadedAdmission is an admission module ready for the plugin.
type loadedAdmission struct {
	hook.AdmissionModule
	close func() error
}

// loadAdmission loads one admission entry: a module of the original ABI, or a Kubewarden policy
// whose metadata gives rules and mutating when the entry does not.
func loadAdmission(ctx context.Context, rt *wasm.Runtime, shared *sharedModules, modules moduleReader, p *profiles.Loaded, e entry[profiles.AdmissionModule], kube *hook.KubernetesHost, logger *slog.Logger) (loadedAdmission, error) {
	m := e.m
	bin, err := modules.read(ctx, p.ResolvePath, m.Module)
	if err != nil {
		return loadedAdmission{}, fmt.Errorf("%s: %w", e.where, err)
	}
	am := hook.AdmissionModule{
		Mutating: m.IsMutating(), Rules: m.Rules,
		FailurePolicy:     admissionregistrationv1.FailurePolicyType(m.FailurePolicy),
		NamespaceSelector: m.NamespaceSelector, ObjectSelector: m.ObjectSelector,
		MatchConditions: m.MatchConditions, Monitor: m.Mode == "monitor", Message: m.Message,
		Timeout: wasm.DefaultTimeout,
	}
	if m.Timeout != nil && m.Timeout.Duration > 0 {
		am.Timeout = m.Timeout.Duration
	}
	if m.Type != profiles.TypeKubewarden {
		loaded, release, err := loadShared(ctx, rt, shared, bin, moduleConfig(p, m.Module, envelope.ExportValidate))
		if err != nil {
			return loadedAdmission{}, fmt.Errorf("%s: %w", e.where, err)
		}
		am.Admitter = hook.Envelope(hook.Module{Module: loaded, Settings: m.Settings})
		return loadedAdmission{am, release}, nil
	}
	grants := policyGrants(m.Grants)
	if err := checkPolicyGrants(e.where, bin, grants); err != nil {
		return loadedAdmission{}, err
	}
	policy, release, err := loadPolicy(ctx, rt, shared, bin, kubewarden.PolicyConfig{
		Module: moduleConfig(p, m.Module, ""), Mode: kubewarden.ExecutionMode(m.ExecutionMode), Entrypoint: m.Entrypoint,
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
		_ = release()
		return loadedAdmission{}, fmt.Errorf("%s: the policy has no rules in its metadata and the entry names none: add rules (or annotate the policy)", e.where)
	}
	am.Admitter = policy
	return loadedAdmission{am, release}, nil
}

// loadShared loads a module of the envelope ABI into rt, or shares the one already loaded from
// the same bytes and configuration; release drops this use of it.
func loadShared(ctx context.Context, rt *wasm.Runtime, shared *sharedModules, bin []byte, cfg wasm.ModuleConfig) (_ *wasm.Module, release func() error, _ error) {
	v, release, err := shared.get(sharedKey(bin, cfg), func() (any, func() error, error) {
		loaded, err := rt.Load(ctx, bin, cfg)
		if err != nil {
			return nil, nil, err
		}
		return loaded, func() error { return loaded.Close(context.Background()) }, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return v.(*wasm.Module), release, nil
}

// loadPolicy loads a Kubewarden policy into rt, or shares the one already loaded from the same
// bytes, configuration, mode, settings and grants; its Kubernetes host is closed with it (a
// shared policy keeps the host it was loaded with).
func loadPolicy(ctx context.Context, rt *wasm.Runtime, shared *sharedModules, bin []byte, cfg kubewarden.PolicyConfig) (_ *kubewarden.Policy, release func() error, _ error) {
	host := cfg.Kubernetes.(*hook.PolicyHost)
	key := sharedKey(bin, cfg.Module, cfg.Mode, cfg.Entrypoint, string(cfg.Settings), cfg.Grants)
	hostUsed := false
	v, release, err := shared.get(key, func() (any, func() error, error) {
		policy, err := kubewarden.Load(ctx, rt, bin, cfg)
		if err != nil {
			return nil, nil, err
		}
		hostUsed = true
		return policy, func() error {
			host.Close()
			return policy.Close(context.Background())
		}, nil
	})
	if !hostUsed { // a shared policy has its own host
		host.Close()
	}
	if err != nil {
		return nil, nil, err
	}
	return v.(*kubewarden.Policy), release, nil
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
func checkGrants(ctx context.Context, modules moduleReader, p *profiles.Loaded, w profiles.ModulePlan) error {
	c, err := collectModules(p, w)
	if err != nil {
		return err
	}
	for _, e := range c.admission {
		if e.m.Type != profiles.TypeKubewarden {
			continue
		}
		bin, err := modules.read(ctx, p.ResolvePath, e.m.Module)
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

// loadedModules are the loaded modules of each hook, in the order of their entries, and how to
// close them.
type loadedModules struct {
	authn     []hook.Module
	authz     []hook.AuthzModule
	admission []hook.AdmissionModule
	closers   closers
}

func (l *loadedModules) count() int { return len(l.closers.fns) }

// loadEntries compiles and pre-warms the entries of c in rt. Modules compile in parallel (a
// cold compile takes ~0.5 s per Go module); each result keeps its entry's place, so the order
// of the profile holds. On an error the modules already loaded are closed.
func loadEntries(ctx context.Context, rt *wasm.Runtime, shared *sharedModules, modules moduleReader, kube *hook.KubernetesHost, p *profiles.Loaded, c *configuredModules, logger *slog.Logger) (_ *loadedModules, err error) {
	l := &loadedModules{authn: make([]hook.Module, len(c.authn)), authz: make([]hook.AuthzModule, len(c.authz)),
		admission: make([]hook.AdmissionModule, len(c.admission))}
	defer func() {
		if err != nil {
			_ = l.closers.close()
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.NumCPU())
	start := func(job func() error) {
		g.Go(func() error {
			if err := gctx.Err(); err != nil { // another module failed, or ctx ended: stop early
				return err
			}
			return job()
		})
	}
	load := func(where string, m profiles.Module, export string) (hook.Module, error) {
		bin, err := modules.read(ctx, p.ResolvePath, m)
		if err != nil {
			return hook.Module{}, fmt.Errorf("%s: %w", where, err)
		}
		loaded, release, err := loadShared(ctx, rt, shared, bin, moduleConfig(p, m, export))
		if err != nil {
			return hook.Module{}, fmt.Errorf("%s: %w", where, err)
		}
		l.closers.track(release)
		return hook.Module{Module: loaded, Settings: m.Settings}, nil
	}
	for i, e := range c.authn {
		start(func() (err error) {
			l.authn[i], err = load(e.where, e.m, envelope.ExportAuthn)
			return err
		})
	}
	for i, e := range c.authz {
		start(func() error {
			hm, err := load(e.where, e.m.Module, envelope.ExportAuthz)
			l.authz[i] = hook.AuthzModule{Module: hm, FailurePolicy: hook.FailurePolicy(e.m.FailurePolicy)}
			return err
		})
	}
	for i, e := range c.admission {
		start(func() error {
			m, err := loadAdmission(ctx, rt, shared, modules, p, e, kube, logger)
			if err != nil {
				return err
			}
			l.closers.track(m.close)
			l.admission[i] = m.AdmissionModule
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return l, err
	}
	// Every job ran: a job skipped because ctx ended would have left an empty entry.
	return l, ctx.Err()
}

// generation makes the loaded modules a generation for the server's extensions.
func (l *loadedModules) generation(p *profiles.Loaded, logger *slog.Logger, decisions *hook.DecisionLog) hook.Generation {
	gen := hook.Generation{Admission: l.admission, Close: l.closers.close}
	if len(l.authn) > 0 {
		a := &hook.TokenAuthenticator{Logger: logger, Modules: l.authn, Decisions: decisions}
		ttl := DefaultAuthnCacheTTL
		if p.Authentication != nil && p.Authentication.CacheTTL != nil {
			ttl = p.Authentication.CacheTTL.Duration
		}
		guard := hook.NewTokenGuard(a)
		gen.Token = guard
		if ttl > 0 {
			gen.Token = cache.New(guard, false, ttl, 0)
		}
		gen.Close = func() error {
			guard.Close() // the cache's lookups may outlive their requests' hold on the generation
			return l.closers.close()
		}
	}
	if len(l.authz) > 0 {
		a := &hook.Authorizer{Logger: logger, Modules: l.authz, CacheTTL: DefaultAuthzCacheTTL, Decisions: decisions}
		if p.Authorization != nil && p.Authorization.CacheTTL != nil {
			a.CacheTTL = p.Authorization.CacheTTL.Duration
		}
		gen.Authorizer = a
	}
	return gen
}

// moduleReader reads modules wherever a profile names them.
type moduleReader struct {
	// builtin holds the built-in modules (builtin:NAME), NAME/NAME.wasm.
	builtin fs.FS
	// remote fetches https://, registry:// and oci:// modules (and caches them).
	remote *source.Fetcher
}

// read reads m's module and checks it against m's pin (SHA256), when given: a module that does
// not match is never loaded.
func (r moduleReader) read(ctx context.Context, resolve func(string) string, m profiles.Module) ([]byte, error) {
	if source.IsRemote(m.Module) {
		if r.remote == nil {
			return nil, fmt.Errorf("%s: remote modules were not enabled: set Options.ModuleFetcher", m.Module)
		}
		got, err := r.remote.Fetch(ctx, m.Module, m.SHA256)
		if err != nil {
			return nil, err
		}
		return got.Bytes, nil
	}
	bin, err := moduleBytes(r.builtin, resolve, m.Module)
	if err != nil || m.SHA256 == "" {
		return bin, err
	}
	pin, err := source.NormalizeDigest(m.SHA256)
	if err != nil {
		return nil, err
	}
	if d := source.Digest(bin); d != pin {
		return nil, fmt.Errorf("%s: the module's digest is %s, but the profile pins %s: the file changed, or the pin is wrong; it was not run", m.Module, d, pin)
	}
	return bin, nil
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
