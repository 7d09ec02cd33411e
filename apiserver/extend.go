package apiserver

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/policy/mutating"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	authnunion "k8s.io/apiserver/pkg/authentication/request/union"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	authzunion "k8s.io/apiserver/pkg/authorization/union"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/egressselector"
	"k8s.io/client-go/informers"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kubeoptions "k8s.io/kubernetes/pkg/kubeapiserver/options"
)

// Extensions are the authenticator and authorizer to add to the built-in chains.
type Extensions struct {
	// Token, when set, is asked after the built-in authenticators for bearer tokens they reject.
	Token authenticator.Token
	// Authorizer, when set, is asked at its place in the authorizer chain; its rules join the
	// rule resolver at the same place, so `kubectl auth can-i --list` knows of it.
	Authorizer   authorizer.Authorizer
	RuleResolver authorizer.RuleResolver
	// AuthorizerName names Authorizer in the chain (the union's reasons and decisions).
	AuthorizerName string
	// AuthorizerAt is how many of kube-apiserver's own authorizers (--authorization-mode, in
	// order) are asked before Authorizer: 0 asks it first, len(modes) last. In between, the
	// built-in authorizers before and after it are built as two chains from the same options
	// and informers as kube-apiserver's own.
	AuthorizerAt int
}

// Extend adds the extensions to all three generic configs of the server chain: requests pass the
// aggregator's chain while SubjectAccessReviews use the kube-apiserver's, and NewConfig made
// shallow copies, so patching one would leave the others without the extensions.
func Extend(config *app.Config, ext Extensions) error {
	gc := config.KubeAPIs.ControlPlane.Generic
	var authz authorizer.Authorizer
	var rules authorizer.RuleResolver
	if ext.Authorizer != nil {
		builtin := builtinChain{
			authorizer: gc.Authorization.Authorizer, rules: gc.RuleResolver, modes: config.Options.Authorization.Modes,
			build: builtinBuilder(config.Options.Authorization, config.KubeAPIs.ControlPlane.VersionedInformers, gc),
		}
		var err error
		if authz, rules, err = chainWith(builtin, ext); err != nil {
			return fmt.Errorf("authorizer chain: %w", err)
		}
	}
	for _, c := range []*genericapiserver.Config{
		gc,
		&config.ApiExtensions.GenericConfig.Config,
		&config.Aggregator.GenericConfig.Config,
	} {
		if ext.Token != nil {
			c.Authentication.Authenticator = authnunion.New(c.Authentication.Authenticator, bearertoken.New(ext.Token))
		}
		if authz != nil {
			c.Authorization.Authorizer, c.RuleResolver = authz, rules
		}
	}
	return nil
}

// builtinChain is kube-apiserver's own authorizer chain, and how to build parts of it.
type builtinChain struct {
	authorizer authorizer.Authorizer
	rules      authorizer.RuleResolver
	// modes are the chain's authorizers in order (--authorization-mode).
	modes []string
	// build builds the chain of some of the modes, as kube-apiserver builds its own.
	build func(modes []string) (authorizer.Authorizer, authorizer.RuleResolver, error)
}

// chainWith places ext's authorizer in the built-in chain: before it, after it, or between the
// authorizers before and after its place, each part built on its own.
func chainWith(builtin builtinChain, ext Extensions) (authorizer.Authorizer, authorizer.RuleResolver, error) {
	at := ext.AuthorizerAt
	if at < 0 || at > len(builtin.modes) {
		return nil, nil, fmt.Errorf("%s cannot be placed after %d of the %d built-in authorizers (%s)", ext.AuthorizerName, at, len(builtin.modes), strings.Join(builtin.modes, ","))
	}
	own := authzunion.NamedAuthorizer{AuthorizerName: ext.AuthorizerName, Authorizer: ext.Authorizer}
	whole := authzunion.NamedAuthorizer{AuthorizerName: "builtin", Authorizer: builtin.authorizer}
	switch at {
	case 0:
		a, err := authzunion.New(own, whole)
		return a, authzunion.NewRuleResolvers(ext.RuleResolver, builtin.rules), err
	case len(builtin.modes):
		a, err := authzunion.New(whole, own)
		return a, authzunion.NewRuleResolvers(builtin.rules, ext.RuleResolver), err
	}
	before, beforeRules, err := builtin.build(builtin.modes[:at])
	if err != nil {
		return nil, nil, fmt.Errorf("authorizers %s: %w", strings.Join(builtin.modes[:at], ","), err)
	}
	after, afterRules, err := builtin.build(builtin.modes[at:])
	if err != nil {
		return nil, nil, fmt.Errorf("authorizers %s: %w", strings.Join(builtin.modes[at:], ","), err)
	}
	a, err := authzunion.New(
		authzunion.NamedAuthorizer{AuthorizerName: "builtin " + strings.Join(builtin.modes[:at], ","), Authorizer: before},
		own,
		authzunion.NamedAuthorizer{AuthorizerName: "builtin " + strings.Join(builtin.modes[at:], ","), Authorizer: after},
	)
	return a, authzunion.NewRuleResolvers(beforeRules, ext.RuleResolver, afterRules), err
}

// builtinBuilder builds chains of built-in authorizers from kube-apiserver's own authorization
// options and informers, as controlplane/apiserver.BuildAuthorizer does; each chain starts, as
// kube-apiserver's does, with the system:masters authorizer. (kube-apiserver's own chain is
// built too and left unused: its Node graph, if any, is kept up to date as well.)
func builtinBuilder(opts *kubeoptions.BuiltInAuthorizationOptions, informers informers.SharedInformerFactory, gc *genericapiserver.Config) func([]string) (authorizer.Authorizer, authorizer.RuleResolver, error) {
	ctx := wait.ContextForChannel(gc.DrainedNotify())
	return func(modes []string) (authorizer.Authorizer, authorizer.RuleResolver, error) {
		o := *opts
		o.Modes = slices.Clone(modes)
		cfg, err := o.ToAuthorizationConfig(informers)
		if err != nil {
			return nil, nil, err
		}
		if gc.EgressSelector != nil {
			if cfg.CustomDial, err = gc.EgressSelector.Lookup(egressselector.ControlPlane.AsNetworkContext()); err != nil {
				return nil, nil, err
			}
		}
		return cfg.New(ctx, gc.APIServerID)
	}
}

// RegisterAdmissionPlugin registers an admission plugin on the server options, before the flags
// are validated (Hooks.Options): it is placed in the recommended order just before
// MutatingAdmissionPolicy (so before the webhooks and admission policies) and is off unless
// --enable-admission-plugins names it.
func RegisterAdmissionPlugin(s *options.ServerRunOptions, name string, factory admission.Factory) {
	a := s.Admission.GenericAdmission
	a.Plugins.Register(name, factory)
	// A copy: the default order is a package-level slice of Kubernetes.
	order := slices.Clone(a.RecommendedPluginOrder)
	at := slices.Index(order, mutating.PluginName)
	if at < 0 {
		at = len(order)
	}
	a.RecommendedPluginOrder = slices.Insert(order, at, name)
	a.DefaultOffPlugins = a.DefaultOffPlugins.Clone().Insert(name)
}
