package apiserver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// fakeAuthorizer answers by user name and records that it was asked.
type fakeAuthorizer struct {
	name    string
	answers map[string]authorizer.Decision
	asked   *[]string
}

func (f fakeAuthorizer) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	*f.asked = append(*f.asked, f.name)
	if d, ok := f.answers[a.GetUser().GetName()]; ok {
		return d, f.name, nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

func (f fakeAuthorizer) ConditionsAwareAuthorize(ctx context.Context, a authorizer.Attributes) authorizer.ConditionsAwareDecision {
	return authorizer.ConditionsAwareDecisionFromParts(f.Authorize(ctx, a))
}

func (f fakeAuthorizer) EvaluateConditions(context.Context, authorizer.ConditionsAwareDecision, authorizer.ConditionsData) (authorizer.Decision, string, error) {
	return authorizer.DecisionDeny, "", authorizer.ErrorConditionEvaluationNotSupported
}

func (f fakeAuthorizer) RulesFor(context.Context, user.Info, string) ([]authorizer.ResourceRuleInfo, []authorizer.NonResourceRuleInfo, bool, error) {
	*f.asked = append(*f.asked, f.name)
	return nil, nil, false, nil
}

// TestChainWithExtensionBetween: with the chain Node,WASM,RBAC the extension is asked after Node
// and before RBAC: a request RBAC would allow but the extension denies is denied, a node's request
// Node allows is allowed without asking the extension, and one nobody decides passes all three
// in order. First and last keep kube-apiserver's own chain whole.
func TestChainWithExtensionBetween(t *testing.T) {
	var asked []string
	fakes := map[string]fakeAuthorizer{
		"Node": {"Node", map[string]authorizer.Decision{"system:node:n1": authorizer.DecisionAllow}, &asked},
		"RBAC": {"RBAC", map[string]authorizer.Decision{"bob": authorizer.DecisionAllow}, &asked},
	}
	var built [][]string
	builtin := builtinChain{
		authorizer: fakeAuthorizer{"builtin", map[string]authorizer.Decision{"bob": authorizer.DecisionAllow}, &asked},
		modes:      []string{"Node", "RBAC"},
		build: func(modes []string) (authorizer.Authorizer, authorizer.RuleResolver, error) {
			built = append(built, modes)
			if len(modes) != 1 {
				t.Fatalf("built %v, want one mode per part", modes)
			}
			return fakes[modes[0]], fakes[modes[0]], nil
		},
	}
	builtin.rules = builtin.authorizer.(fakeAuthorizer)
	module := fakeAuthorizer{"WASM", map[string]authorizer.Decision{"bob": authorizer.DecisionDeny}, &asked}
	ext := Extensions{Authorizer: module, RuleResolver: module, AuthorizerName: "WASM", AuthorizerAt: 1}
	authz, rules, err := chainWith(builtin, ext)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(built) != "[[Node] [RBAC]]" {
		t.Errorf("built %v, want Node and RBAC apart", built)
	}
	for _, c := range []struct {
		user  string
		want  authorizer.Decision
		asked []string
	}{
		{"bob", authorizer.DecisionDeny, []string{"Node", "WASM"}},
		{"system:node:n1", authorizer.DecisionAllow, []string{"Node"}},
		{"nobody", authorizer.DecisionNoOpinion, []string{"Node", "WASM", "RBAC"}},
	} {
		asked = nil
		got, _, _ := authz.Authorize(context.Background(), authorizer.AttributesRecord{User: &user.DefaultInfo{Name: c.user}})
		if got != c.want || !slices.Equal(asked, c.asked) {
			t.Errorf("%s: decision %v after asking %v, want %v after %v", c.user, got, asked, c.want, c.asked)
		}
	}
	asked = nil
	_, _, _, _ = rules.RulesFor(context.Background(), &user.DefaultInfo{Name: "bob"}, "default")
	if !slices.Equal(asked, []string{"Node", "WASM", "RBAC"}) {
		t.Errorf("rule resolvers asked %v, want Node, WASM, RBAC", asked)
	}

	// First and last: kube-apiserver's chain is used whole, nothing is built.
	built = nil
	for at, want := range map[int][]string{0: {"WASM"}, 2: {"builtin"}} {
		ext.AuthorizerAt = at
		authz, _, err := chainWith(builtin, ext)
		if err != nil {
			t.Fatal(err)
		}
		asked = nil
		got, _, _ := authz.Authorize(context.Background(), authorizer.AttributesRecord{User: &user.DefaultInfo{Name: "bob"}})
		if !slices.Equal(asked, want) || (at == 0) != (got == authorizer.DecisionDeny) {
			t.Errorf("at %d: %v after asking %v, want the decision of %v", at, got, asked, want)
		}
	}
	if built != nil {
		t.Errorf("first or last built %v", built)
	}
	ext.AuthorizerAt = 3
	if _, _, err := chainWith(builtin, ext); err == nil || !strings.Contains(err.Error(), "Node,RBAC") {
		t.Errorf("a place beyond the chain: %v", err)
	}
}
