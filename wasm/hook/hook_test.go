package hook

import (
	"context"
	"slices"
	"testing"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/wasm"
)

func load(t *testing.T, rt *wasm.Runtime, name string) Module {
	t.Helper()
	bin, ok := examples.Module(name)
	if !ok {
		t.Fatalf("no builtin %s (have %v)", name, examples.Names())
	}
	m, err := rt.Load(context.Background(), bin, wasm.ModuleConfig{Name: name, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return Module{Module: m}
}

func newRuntime(t *testing.T) *wasm.Runtime {
	rt, err := wasm.NewRuntime(context.Background(), wasm.RuntimeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

func TestTokenAuthenticator(t *testing.T) {
	rt := newRuntime(t)
	// A module without an authn export fails; the next one is asked and wins.
	a := &TokenAuthenticator{Modules: []Module{load(t, rt, "magic-validate"), load(t, rt, "magic-authn")}, APIAudiences: []string{"api"}}
	resp, ok, err := a.AuthenticateToken(context.Background(), "magic-token")
	if err != nil || !ok {
		t.Fatalf("%v %v", ok, err)
	}
	if resp.User.GetName() != "magic-user" || !slices.Equal(resp.User.GetGroups(), []string{"magic-group", user.AllAuthenticated}) {
		t.Errorf("user %+v", resp.User)
	}
	ctx := authenticator.WithAudiences(context.Background(), authenticator.Audiences{"other"})
	if resp, ok, _ := a.AuthenticateToken(ctx, "magic-token"); !ok || !slices.Equal(resp.Audiences, []string{"other"}) {
		t.Errorf("request audiences not used: %+v", resp)
	}
	if _, ok, err := a.AuthenticateToken(context.Background(), "nope"); ok || err != nil {
		t.Errorf("unknown token: %v %v", ok, err)
	}
	broken := &TokenAuthenticator{Modules: []Module{load(t, rt, "magic-validate")}}
	if _, ok, err := broken.AuthenticateToken(context.Background(), "magic-token"); ok || err != nil {
		t.Errorf("a failing module must not authenticate: %v %v", ok, err)
	}
}

func TestAuthorizer(t *testing.T) {
	rt := newRuntime(t)
	attrs := func(name string, groups []string, resource string) authorizer.Attributes {
		return authorizer.AttributesRecord{User: &user.DefaultInfo{Name: name, Groups: groups}, Verb: "get", Resource: resource, APIVersion: "v1", ResourceRequest: true}
	}
	a := &Authorizer{Modules: []AuthzModule{{Module: load(t, rt, "magic-authz")}}}
	if d, _, err := a.Authorize(context.Background(), attrs("magic-user", []string{"magic-group"}, "configmaps")); d != authorizer.DecisionAllow || err != nil {
		t.Errorf("magic-group configmaps: %v %v", d, err)
	}
	if d, _, _ := a.Authorize(context.Background(), attrs("magic-user", []string{"magic-group"}, "pods")); d != authorizer.DecisionNoOpinion {
		t.Errorf("pods: %v", d)
	}
	// A failing module under failurePolicy Deny denies, but never the admin or the apiserver.
	deny := &Authorizer{Modules: []AuthzModule{{Module: load(t, rt, "magic-validate"), FailurePolicy: Deny}}}
	if d, reason, err := deny.Authorize(context.Background(), attrs("bob", nil, "pods")); d != authorizer.DecisionDeny || err == nil || reason == "" {
		t.Errorf("failing module, Deny policy: %v %q %v", d, reason, err)
	}
	for _, u := range []authorizer.Attributes{attrs("admin", []string{user.SystemPrivilegedGroup}, "pods"), attrs(user.APIServerUser, nil, "pods")} {
		if d, _, err := deny.Authorize(context.Background(), u); d != authorizer.DecisionNoOpinion || err != nil {
			t.Errorf("%s must never be judged by modules: %v %v", u.GetUser().GetName(), d, err)
		}
	}
	noOpinion := &Authorizer{Modules: []AuthzModule{{Module: load(t, rt, "magic-validate")}}}
	if d, _, err := noOpinion.Authorize(context.Background(), attrs("bob", nil, "pods")); d != authorizer.DecisionNoOpinion || err != nil {
		t.Errorf("failing module, NoOpinion policy: %v %v", d, err)
	}
	if _, _, incomplete, _ := a.RulesFor(context.Background(), &user.DefaultInfo{Name: "x"}, "default"); !incomplete {
		t.Error("RulesFor must say its list is incomplete")
	}
	if d := a.ConditionsAwareAuthorize(context.Background(), attrs("magic-user", []string{"magic-group"}, "configmaps")); !d.IsAllow() {
		t.Errorf("conditions-aware: %+v", d)
	}
}
