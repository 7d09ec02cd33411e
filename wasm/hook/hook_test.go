package hook

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
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

// newRuntime is a runtime as the server's: it serves both ABIs (the faults module, of the
// envelope ABI, is a waPC guest too).
func newRuntime(t *testing.T) *wasm.Runtime {
	rt, err := wasm.NewRuntime(context.Background(), wasm.RuntimeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	if err := kubewarden.DefineHosts(context.Background(), rt); err != nil {
		t.Fatal(err)
	}
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

// TestAuthorizerDenyStands: a module that answers allowed and denied both true denies, also
// under failurePolicy NoOpinion, and the next module (which would allow) is not asked.
func TestAuthorizerDenyStands(t *testing.T) {
	rt := newRuntime(t)
	conflicted := AuthzModule{Module: loadFaults(t, rt, "conflicted", `{"mode":"allow-and-deny"}`, envelope.ExportAuthz)}
	allowing := AuthzModule{Module: load(t, rt, "magic-authz")}
	var logs bytes.Buffer
	a := &Authorizer{Modules: []AuthzModule{conflicted, allowing}, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	attrs := authorizer.AttributesRecord{User: &user.DefaultInfo{Name: "magic-user", Groups: []string{"magic-group"}}, Verb: "get", Resource: "configmaps", APIVersion: "v1", ResourceRequest: true}
	alone := &Authorizer{Modules: []AuthzModule{allowing}}
	if d, _, err := alone.Authorize(context.Background(), attrs); d != authorizer.DecisionAllow || err != nil {
		t.Fatalf("magic-authz alone must allow: %v %v", d, err)
	}
	d, reason, err := a.Authorize(context.Background(), attrs)
	if d != authorizer.DecisionDeny || err != nil || reason != "the faults module allows and denies" {
		t.Errorf("allowed and denied both true: %v %q %v, want a deny with the module's reason", d, reason, err)
	}
	if !strings.Contains(logs.String(), "module=conflicted") || !strings.Contains(logs.String(), "both true") {
		t.Errorf("the invalid answer is not logged: %s", logs.String())
	}
}

// TestTokenAuthenticatorLogsNoToken: a module that echoes the token into its error and its
// stderr fails without the token reaching the log.
func TestTokenAuthenticatorLogsNoToken(t *testing.T) {
	const token = "leak-me-if-you-can-0123456789"
	rt := newRuntime(t)
	var logs bytes.Buffer
	a := &TokenAuthenticator{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Modules: []Module{
		loadFaults(t, rt, "echo-error", `{"mode":"echo-token"}`, envelope.ExportAuthn),
		loadFaults(t, rt, "echo-exit", `{"mode":"echo-token-exit"}`, envelope.ExportAuthn),
	}}
	if _, ok, err := a.AuthenticateToken(context.Background(), token); ok || err != nil {
		t.Fatalf("failing modules must not authenticate: %v %v", ok, err)
	}
	got := logs.String()
	if strings.Contains(got, token) {
		t.Errorf("the token reached the log:\n%s", got)
	}
	for _, want := range []string{"module=echo-error", "module=echo-exit", "unknown token " + envelope.Redacted, "stderr: giving up on token " + envelope.Redacted} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
}

// callCounter counts module calls (the runtime's observer).
type callCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *callCounter) ObserveCall(module, _ string, _ time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[module]++
}
func (c *callCounter) ObserveError(string, string, wasm.ErrorKind) {}
func (c *callCounter) ObservePool(string, int, int)                {}

func (c *callCounter) count(module string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[module]
}

// TestAuthorizerCache: with CacheTTL, a decision for the same attributes is answered from the
// cache until it expires, other attributes ask the modules, and a decision reached after a
// module failed (or answered against the contract) is never cached.
func TestAuthorizerCache(t *testing.T) {
	counter := &callCounter{calls: map[string]int{}}
	rt, err := wasm.NewRuntime(context.Background(), wasm.RuntimeConfig{Observer: counter})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	if err := kubewarden.DefineHosts(context.Background(), rt); err != nil {
		t.Fatal(err)
	}
	attrs := func(name, resource string) authorizer.Attributes {
		return authorizer.AttributesRecord{User: &user.DefaultInfo{Name: name, Groups: []string{"magic-group"}}, Verb: "get", Resource: resource, APIVersion: "v1", ResourceRequest: true}
	}
	a := &Authorizer{Modules: []AuthzModule{{Module: load(t, rt, "magic-authz")}}, CacheTTL: 300 * time.Millisecond}
	ask := func(name, resource string, want authorizer.Decision, wantCalls int) {
		t.Helper()
		if d, _, err := a.Authorize(context.Background(), attrs(name, resource)); d != want || err != nil {
			t.Errorf("%s %s: %v %v, want %v", name, resource, d, err, want)
		}
		if n := counter.count("magic-authz"); n != wantCalls {
			t.Errorf("%s %s: the module was called %d times in all, want %d", name, resource, n, wantCalls)
		}
	}
	ask("magic-user", "configmaps", authorizer.DecisionAllow, 1)
	ask("magic-user", "configmaps", authorizer.DecisionAllow, 1) // cached
	ask("magic-user", "pods", authorizer.DecisionNoOpinion, 2)   // other attributes
	ask("magic-user", "pods", authorizer.DecisionNoOpinion, 2)   // NoOpinion is an answer too
	ask("other-user", "configmaps", authorizer.DecisionAllow, 3) // another user
	time.Sleep(400 * time.Millisecond)
	ask("magic-user", "configmaps", authorizer.DecisionAllow, 4) // expired

	// Failures are never cached: a module without an authz export, under failurePolicy Deny.
	broken := &Authorizer{Modules: []AuthzModule{{Module: load(t, rt, "magic-validate"), FailurePolicy: Deny}}, CacheTTL: time.Minute}
	for i := 1; i <= 2; i++ {
		if d, _, err := broken.Authorize(context.Background(), attrs("bob", "pods")); d != authorizer.DecisionDeny || err == nil {
			t.Errorf("failing module: %v %v", d, err)
		}
		if n := counter.count("magic-validate"); n != i {
			t.Errorf("failing module asked %d times after %d requests: its failure was cached", n, i)
		}
	}
	// Nor is a deny in an answer that breaks the contract.
	conflicted := &Authorizer{Modules: []AuthzModule{{Module: loadFaults(t, rt, "conflicted", `{"mode":"allow-and-deny"}`, envelope.ExportAuthz)}}, CacheTTL: time.Minute}
	for i := 1; i <= 2; i++ {
		if d, _, _ := conflicted.Authorize(context.Background(), attrs("bob", "pods")); d != authorizer.DecisionDeny {
			t.Errorf("conflicted answer: %v", d)
		}
		if n := counter.count("conflicted"); n != i {
			t.Errorf("conflicted module asked %d times after %d requests: its invalid answer was cached", n, i)
		}
	}
}
