// Package wasmkube runs a real Kubernetes control plane in-process: an embedded etcd, an
// unmodified kube-apiserver and kube-controller-manager, configured by a profile
// (package profiles), with the profile's WebAssembly modules loaded into the kube-apiserver's
// authentication, authorization and admission. It is the library behind the wasmkube command;
// tests and other Go programs use the same code path:
//
//	p, _ := profiles.NewFinder("").Resolve("minimal")
//	c, err := wasmkube.Up(ctx, p, wasmkube.Options{DataDir: t.TempDir(), Port: ptr.To[int32](0)})
//	if err != nil { ... }
//	defer c.Stop(context.Background())
//	client := kubernetes.NewForConfigOrDie(c.RESTConfig)
//
// PlanFor turns a profile and Options into a Plan (package apiserver's flags and files, and where
// the modules go) without effects; Up runs it as a list of named steps. The example modules that
// profiles name as builtin:NAME are not part of the library: pass them as Options.BuiltinModules
// (the wasmkube command passes examples.FS()).
package wasmkube

import (
	"fmt"
	"path/filepath"
	"runtime/debug"

	"github.com/adrg/xdg"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/wasmkube/wasmkube/apiserver"
	"github.com/wasmkube/wasmkube/apiserver/nodes"
	"github.com/wasmkube/wasmkube/profiles"
)

// version is set with -ldflags "-X github.com/wasmkube/wasmkube.version=…" by `make build`.
var version string

// Version is wasmkube's version: the -ldflags stamp, else the module version `go install`
// recorded, else "devel".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// DataDir returns where a profile keeps its data: the profile's dataDir (relative to the profile
// file), else $XDG_DATA_HOME/wasmkube/NAME.
func DataDir(p *profiles.Loaded) string {
	if p.DataDir != "" {
		return p.ResolvePath(p.DataDir)
	}
	return filepath.Join(xdg.DataHome, "wasmkube", p.Name)
}

// UserProfileDir is where user profiles live: $XDG_CONFIG_HOME/wasmkube/profiles.
func UserProfileDir() string { return filepath.Join(xdg.ConfigHome, "wasmkube", "profiles") }

// ResolveProfile finds a profile by path or name (see profiles.Finder.Resolve) in the user's
// profile directory and the built-in profiles.
func ResolveProfile(ref string) (*profiles.Loaded, error) {
	return profiles.NewFinder(UserProfileDir()).Resolve(ref)
}

// Plan is what Up runs for a profile: the components' flags and files, and where the modules go.
type Plan struct {
	*apiserver.Plan
	// Modules is where the modules go, from the profile and the original proof of concept's
	// flags (profiles.TakeWASMFlags), which kube-apiserver does not get.
	Modules profiles.ModulePlan
	// Nodes are the simulated nodes; nil without any.
	Nodes *nodes.Spec
}

// PlanFor returns what Up would run for the profile and options, without running anything.
func PlanFor(p *profiles.Loaded, opts Options) (*Plan, error) {
	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir = DataDir(p)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dataDir, err)
	}
	for _, a := range opts.APIServerArgs {
		if name, _, _ := profiles.SplitArg(a); name == "bind-address" || name == "secure-port" {
			return nil, fmt.Errorf("--apiserver-arg %q: set the listen address and port with --address and --port", a)
		}
	}
	flags := profiles.TakeWASMFlags(p.Profile, opts.APIServerArgs)
	in := apiserver.PlanInput{
		Name: p.Name, DataDir: abs, Address: p.EffectiveAddress(), Port: p.EffectivePort(),
		AuthorizationModes: flags.AuthorizationModes, AdmissionPlugins: flags.AdmissionPlugins,
		ExtraAPIServerArgs: flags.ExtraArgs, EtcdFsync: p.EtcdFsync(),
		Controllers: p.ControllersEnabled(), ExtraControllerManagerArgs: p.Controllers.ExtraArgs,
		Scheduler: p.SchedulerEnabled(), ExtraSchedulerArgs: p.Scheduler.ExtraArgs,
	}
	if opts.Address != "" {
		in.Address = opts.Address
	}
	if opts.Port != nil {
		in.Port = *opts.Port
	}
	if ext := p.Etcd.External; ext != nil {
		in.ExternalEtcd = &apiserver.ExternalEtcd{
			Servers: ext.Servers, CAFile: p.ResolvePath(ext.CAFile), CertFile: p.ResolvePath(ext.CertFile),
			KeyFile: p.ResolvePath(ext.KeyFile), Prefix: ext.Prefix,
		}
	}
	plan, err := apiserver.NewPlan(in)
	if err != nil {
		return nil, err
	}
	spec, err := nodeSpec(p)
	if err != nil {
		return nil, err
	}
	return &Plan{Plan: plan, Modules: flags.Modules, Nodes: spec}, nil
}

// nodeSpec is the profile's simulated nodes, nil when it has none.
func nodeSpec(p *profiles.Loaded) (*nodes.Spec, error) {
	if p.NodeCount() == 0 {
		return nil, nil
	}
	cpu, err := resource.ParseQuantity(p.Nodes.EffectiveCPU())
	if err != nil {
		return nil, fmt.Errorf("profile %s: nodes.cpu: %w", p.Name, err)
	}
	mem, err := resource.ParseQuantity(p.Nodes.EffectiveMemory())
	if err != nil {
		return nil, fmt.Errorf("profile %s: nodes.memory: %w", p.Name, err)
	}
	return &nodes.Spec{Prefix: p.Name + "-node", Count: int(p.Nodes.Count), CPU: cpu, Memory: mem, Pods: int64(p.Nodes.EffectivePods()),
		KubeletVersion: apiserver.KubernetesVersion()}, nil
}
