package hook

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
)

// failingModes are the ways the faults module fails in its authn and authz exports.
var failingModes = []string{"trap", "loop", "memory", "exit3", "garbage", "nothing", "error"}

func loadFailing(t *testing.T, rt *wasm.Runtime, mode string, export string) Module {
	t.Helper()
	m, err := rt.Load(context.Background(), faultsWasm, wasm.ModuleConfig{Name: "failing-" + mode, Exports: []string{export},
		PoolSize: 1, Timeout: 300 * time.Millisecond, MemoryLimit: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return Module{Module: m, Settings: []byte(`{"mode":"` + mode + `"}`)}
}

// TestFailClosed: an authentication module that fails in any way (trap, timeout, memory,
// exit, garbage, no answer, an error, an answer without a username, an error beside a user)
// never authenticates; an authorization module that fails never allows (NoOpinion, or Deny
// under failurePolicy Deny), and never judges the admin or the API server.
func TestFailClosed(t *testing.T) {
	rt := newRuntime(t)
	quiet := slog.New(slog.DiscardHandler)
	for _, mode := range append(failingModes, "no-username", "error-and-user") {
		a := &TokenAuthenticator{Modules: []Module{loadFailing(t, rt, mode, envelope.ExportAuthn)}, Logger: quiet}
		if resp, ok, _ := a.AuthenticateToken(context.Background(), "any-token"); ok || resp != nil {
			t.Errorf("authn %s authenticated: %+v", mode, resp)
		}
	}
	attrs := func(name string, groups ...string) authorizer.Attributes {
		return authorizer.AttributesRecord{User: &user.DefaultInfo{Name: name, Groups: groups}, Verb: "delete", Resource: "secrets", APIVersion: "v1", ResourceRequest: true}
	}
	for _, mode := range failingModes {
		m := loadFailing(t, rt, mode, envelope.ExportAuthz)
		for _, policy := range []FailurePolicy{NoOpinion, Deny} {
			a := &Authorizer{Modules: []AuthzModule{{Module: m, FailurePolicy: policy}}, Logger: quiet}
			d, _, _ := a.Authorize(context.Background(), attrs("bob"))
			want := authorizer.DecisionNoOpinion
			if policy == Deny {
				want = authorizer.DecisionDeny
			}
			if d != want {
				t.Errorf("authz %s under %s: %v, want %v", mode, policy, d, want)
			}
			for _, u := range []authorizer.Attributes{attrs("admin", user.SystemPrivilegedGroup), attrs(user.APIServerUser)} {
				if d, _, err := a.Authorize(context.Background(), u); d != authorizer.DecisionNoOpinion || err != nil {
					t.Errorf("authz %s judged %s: %v %v", mode, u.GetUser().GetName(), d, err)
				}
			}
		}
	}
}
