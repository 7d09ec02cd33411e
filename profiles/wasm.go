package profiles

import (
	"slices"
	"strings"
)

// WASM is the name the modules run under in kube-apiserver: the authorizer-chain mode that places
// the authorization modules (authorization.chain, --authorization-mode) and the admission plugin
// that runs the admission modules (--enable-admission-plugins, --admission-control-config-file),
// as the original proof of concept named both.
const WASM = "WASM"

// DefaultAuthorizationChain is the authorizer chain of a profile that names none.
func DefaultAuthorizationChain() []string { return []string{"Node", "RBAC", WASM} }

// The original proof of concept's kube-apiserver flags that kube-apiserver does not know.
const (
	FlagAuthenticationConfig = "authentication-wasm-config-file"
	FlagAuthorizationConfig  = "authorization-wasm-config-file"
)

// ModulePlan is where a cluster's modules go, from the profile and the original proof of
// concept's flags.
type ModulePlan struct {
	// AuthenticationConfigFile and AuthorizationConfigFile are the original's
	// --authentication-wasm-config-file and --authorization-wasm-config-file.
	AuthenticationConfigFile string `json:"authenticationConfigFile,omitempty"`
	AuthorizationConfigFile  string `json:"authorizationConfigFile,omitempty"`
	// AuthorizationChain is the authorizer chain with WASM where the modules sit; the
	// --authorization-mode kube-apiserver gets lacks WASM.
	AuthorizationChain []string `json:"authorizationChain"`
	// AdmissionEnabled says the WASM admission plugin is enabled (--enable-admission-plugins).
	AdmissionEnabled bool `json:"admissionEnabled"`
	// AdmissionConfigFile is --admission-control-config-file, whose WASM plugin entry may list
	// modules (kube-apiserver reads it too, for its own plugins).
	AdmissionConfigFile string `json:"admissionConfigFile,omitempty"`
}

// AuthorizerPlace is how many built-in authorizers (BuiltinModes(chain)) come before WASM in the
// chain: 0 asks the modules first. A chain without WASM gives -1.
func AuthorizerPlace(chain []string) int { return slices.Index(chain, WASM) }

// BuiltinModes is the chain kube-apiserver runs itself: the chain without WASM, AlwaysDeny when
// nothing else remains (only the modules decide).
func BuiltinModes(chain []string) []string {
	builtin := slices.DeleteFunc(slices.Clone(chain), func(m string) bool { return m == WASM })
	if len(builtin) == 0 {
		return []string{"AlwaysDeny"}
	}
	return builtin
}

// APIServerFlags are a profile's kube-apiserver flags with the original's taken out: what
// kube-apiserver gets, and where the modules go.
type APIServerFlags struct {
	// AuthorizationModes is the default --authorization-mode: BuiltinModes of the profile's chain.
	AuthorizationModes []string
	// AdmissionPlugins are to be enabled next to kube-apiserver's defaults when no extra flag sets
	// --enable-admission-plugins: WASM, unless an extra --enable-admission-plugins names it.
	AdmissionPlugins []string
	// ExtraArgs are the layers of extra flags as given ("name=value"), each overriding the ones
	// before: the original's config-file flags removed, WASM taken out of --authorization-mode,
	// and WASM added to the --enable-admission-plugins that wins.
	ExtraArgs [][]string
	Modules   ModulePlan
}

// TakeWASMFlags interprets the original proof of concept's flags among the profile's
// apiserver.extraArgs and then extra (e.g. `up --apiserver-arg`), a later flag overriding an
// earlier one: the config-file flags are taken out, WASM is taken out of --authorization-mode
// (the chain is recorded), and the WASM admission plugin is enabled.
func TakeWASMFlags(p *Profile, extra []string) APIServerFlags {
	chain := DefaultAuthorizationChain()
	if p.Authorization != nil && len(p.Authorization.Chain) > 0 {
		chain = p.Authorization.Chain
	}
	f := APIServerFlags{Modules: ModulePlan{AuthorizationChain: slices.Clone(chain)}}
	var enabled *string // the --enable-admission-plugins that wins (out never grows past its capacity)
	for _, layer := range [][]string{p.APIServer.ExtraArgs, extra} {
		out := make([]string, 0, len(layer))
		for _, a := range layer {
			name, value, _ := SplitArg(a)
			switch name {
			case FlagAuthenticationConfig:
				f.Modules.AuthenticationConfigFile = value
				continue
			case FlagAuthorizationConfig:
				f.Modules.AuthorizationConfigFile = value
				continue
			case "authorization-mode":
				f.Modules.AuthorizationChain = strings.Split(value, ",")
				a = name + "=" + strings.Join(BuiltinModes(f.Modules.AuthorizationChain), ",")
			case "admission-control-config-file":
				f.Modules.AdmissionConfigFile = value
			}
			out = append(out, a)
			if name == "enable-admission-plugins" {
				enabled = &out[len(out)-1]
			}
		}
		f.ExtraArgs = append(f.ExtraArgs, out)
	}
	f.AuthorizationModes = BuiltinModes(chain)
	if enabled != nil {
		_, value, _ := SplitArg(*enabled)
		f.Modules.AdmissionEnabled = slices.Contains(strings.Split(value, ","), WASM)
	}
	// Always on, modules or not (with none it calls nothing): a reload may add admission modules,
	// and the plugins of a running kube-apiserver cannot change.
	if !f.Modules.AdmissionEnabled {
		if enabled != nil {
			*enabled += "," + WASM
		} else {
			f.AdmissionPlugins = []string{WASM}
		}
		f.Modules.AdmissionEnabled = true
	}
	return f
}
