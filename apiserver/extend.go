package apiserver

import (
	"slices"

	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/policy/mutating"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	authnunion "k8s.io/apiserver/pkg/authentication/request/union"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	authzunion "k8s.io/apiserver/pkg/authorization/union"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// Extensions are the authenticator and authorizer to add to the built-in chains.
type Extensions struct {
	// Token, when set, is asked after the built-in authenticators for bearer tokens they reject.
	Token authenticator.Token
	// Authorizer, when set, is asked before (First) or after the built-in authorizers; its rules
	// join the rule resolver so `kubectl auth can-i --list` knows of it.
	Authorizer   authorizer.Authorizer
	RuleResolver authorizer.RuleResolver
	First        bool
}

// Extend adds the extensions to all three generic configs of the server chain: requests pass the
// aggregator's chain while SubjectAccessReviews use the kube-apiserver's, and NewConfig made
// shallow copies, so patching one would leave the others without the extensions.
func Extend(config *app.Config, ext Extensions) error {
	for _, gc := range []*genericapiserver.Config{
		config.KubeAPIs.ControlPlane.Generic,
		&config.ApiExtensions.GenericConfig.Config,
		&config.Aggregator.GenericConfig.Config,
	} {
		if ext.Token != nil {
			gc.Authentication.Authenticator = authnunion.New(gc.Authentication.Authenticator, bearertoken.New(ext.Token))
		}
		if ext.Authorizer == nil {
			continue
		}
		builtin := authzunion.NamedAuthorizer{AuthorizerName: "builtin", Authorizer: gc.Authorization.Authorizer}
		wasm := authzunion.NamedAuthorizer{AuthorizerName: "WASM", Authorizer: ext.Authorizer}
		chain, rules := []authzunion.NamedAuthorizer{builtin, wasm}, []authorizer.RuleResolver{gc.RuleResolver, ext.RuleResolver}
		if ext.First {
			chain, rules = []authzunion.NamedAuthorizer{wasm, builtin}, []authorizer.RuleResolver{ext.RuleResolver, gc.RuleResolver}
		}
		authz, err := authzunion.New(chain...)
		if err != nil {
			return err
		}
		gc.Authorization.Authorizer = authz
		gc.RuleResolver = authzunion.NewRuleResolvers(rules...)
	}
	return nil
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
