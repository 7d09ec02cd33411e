package wasmkube

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/adrg/xdg"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apiserver/pkg/authentication/token/cache"

	"github.com/wasmkube/wasmkube/apiserver"
	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/hook"
	"github.com/wasmkube/wasmkube/wasm/metrics"
)

// DefaultAuthnCacheTTL is how long a module's successful authentication is cached.
const DefaultAuthnCacheTTL = 10 * time.Second

// ModuleCacheDir is where compiled modules are kept across restarts.
func ModuleCacheDir() string { return filepath.Join(xdg.CacheHome, "wasmkube", "modules") }

// clusterModules are the modules of one cluster and the runtime that hosts them.
type clusterModules struct {
	rt      *wasm.Runtime
	modules []*wasm.Module
}

func (cm *clusterModules) close() error {
	for _, m := range cm.modules {
		_ = m.Close(context.Background())
	}
	return cm.rt.Close(context.Background())
}

// loadModules compiles and pre-warms the profile's authentication and authorization modules
// and returns the API server extensions that run them. Nothing is loaded for a profile without
// modules. Errors name the profile entry.
func loadModules(ctx context.Context, p *profiles.Loaded, cacheDir string) (_ *clusterModules, _ apiserver.Extensions, err error) {
	var ext apiserver.Extensions
	hasAuthn := p.Authentication != nil && len(p.Authentication.Modules) > 0
	hasAuthz := p.Authorization != nil && len(p.Authorization.Modules) > 0
	if !hasAuthn && !hasAuthz {
		return nil, ext, nil
	}
	rt, err := wasm.NewRuntime(ctx, wasm.RuntimeConfig{CacheDir: cacheDir, Observer: metrics.Registered()})
	if err != nil {
		return nil, ext, err
	}
	cm := &clusterModules{rt: rt}
	defer func() {
		if err != nil {
			_ = cm.close()
		}
	}()
	load := func(field string, i int, m profiles.Module, export string) (hook.Module, error) {
		where := fmt.Sprintf("profile %s: %s.modules[%d] (%s)", p.Name, field, i, m.Name)
		bin, err := moduleBytes(p, m.Module)
		if err != nil {
			return hook.Module{}, fmt.Errorf("%s: %w", where, err)
		}
		loaded, err := rt.Load(ctx, bin, moduleConfig(m, export))
		if err != nil {
			return hook.Module{}, fmt.Errorf("%s: %w", where, err)
		}
		cm.modules = append(cm.modules, loaded)
		return hook.Module{Module: loaded, Settings: m.Settings}, nil
	}
	if hasAuthn {
		a := &hook.TokenAuthenticator{}
		for i, m := range p.Authentication.Modules {
			hm, err := load("authentication", i, m, wasm.ExportAuthn)
			if err != nil {
				return nil, ext, err
			}
			a.Modules = append(a.Modules, hm)
		}
		ttl := DefaultAuthnCacheTTL
		if p.Authentication.CacheTTL != nil {
			ttl = p.Authentication.CacheTTL.Duration
		}
		ext.Token = a
		if ttl > 0 {
			ext.Token = cache.New(a, false, ttl, 0)
		}
	}
	if hasAuthz {
		a := &hook.Authorizer{}
		for i, m := range p.Authorization.Modules {
			hm, err := load("authorization", i, m.Module, wasm.ExportAuthz)
			if err != nil {
				return nil, ext, err
			}
			policy := hook.NoOpinion
			if m.FailurePolicy == "Deny" {
				policy = hook.Deny
			}
			a.Modules = append(a.Modules, hook.AuthzModule{Module: hm, FailurePolicy: policy})
		}
		first, err := wasmFirst(p.Authorization.Chain)
		if err != nil {
			return nil, ext, fmt.Errorf("profile %s: authorization.chain: %w", p.Name, err)
		}
		ext.Authorizer, ext.RuleResolver, ext.First = a, a, first
	}
	return cm, ext, nil
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
		return false, fmt.Errorf("WASM between built-in authorizers (%s) is not supported yet: put it first or last", strings.Join(chain, ", "))
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

func moduleConfig(m profiles.Module, export string) wasm.ModuleConfig {
	cfg := wasm.ModuleConfig{Name: m.Name, Exports: []string{export}, Isolation: wasm.Isolation(m.Isolation)}
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
	return cfg
}
