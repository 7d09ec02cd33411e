// Package hook is the API server's side of the modules: a token authenticator, an authorizer,
// the admission plugin (modules of the envelope ABI and Kubewarden policies alike) and the host
// that answers Kubewarden policies' kubernetes calls. The decisions the server makes from a
// module's answer are functions here (DecideAuthn, DecideAuthz, DecideAdmission) that
// `wasmkube module run` calls too, so both decide alike. It imports k8s.io/apiserver, never
// k8s.io/kubernetes.
package hook

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
)

// Module is a loaded module with what its profile entry adds.
type Module struct {
	*wasm.Module
	Settings json.RawMessage
}

// TokenAuthenticator tries its modules in order; the first to authenticate wins. A module
// error never authenticates: it is logged (without the token) and the next module is asked.
type TokenAuthenticator struct {
	Modules []Module
	// APIAudiences are sent when the request context names none.
	APIAudiences []string
	Logger       *slog.Logger
}

var _ authenticator.Token = (*TokenAuthenticator)(nil)

// AuthenticateToken implements authenticator.Token.
func (a *TokenAuthenticator) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	audiences, ok := authenticator.AudiencesFrom(ctx)
	if !ok {
		audiences = a.APIAudiences
	}
	for _, m := range a.Modules {
		resp, ok, err := Authenticate(ctx, m, token, audiences)
		if err != nil {
			a.logger().Warn("authentication module failed; trying the next authenticator", "module", m.Name(), "err", err)
			continue
		}
		if ok {
			return resp, true, nil
		}
	}
	return nil, false, nil
}

func (a *TokenAuthenticator) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.Default()
	}
	return a.Logger
}

// FailurePolicy decides what a module error means for authorization.
type FailurePolicy string

const (
	// NoOpinion passes the request on to the next authorizer (default).
	NoOpinion FailurePolicy = "NoOpinion"
	// Deny denies the request.
	Deny FailurePolicy = "Deny"
)

// AuthzModule is an authorizer module with its failure policy.
type AuthzModule struct {
	Module
	FailurePolicy FailurePolicy
}

// Authorizer asks its modules in order; the first Allow or Deny wins.
//
// # Notes
//
//   - A module's deny always stands, even in an invalid answer (allowed and denied both true);
//     a module failure otherwise means NoOpinion or Deny as its failure policy says.
//   - Modules are never asked about system:masters or the API server's own identity
//     (system:apiserver): no module can lock out the admin or the server itself.
//   - It cannot list rules: RulesFor reports an incomplete, empty list and says why, so
//     `kubectl auth can-i --list` says that its answer may be incomplete.
type Authorizer struct {
	Modules []AuthzModule
	Logger  *slog.Logger
}

var (
	_ authorizer.Authorizer   = (*Authorizer)(nil)
	_ authorizer.RuleResolver = (*Authorizer)(nil)
)

// Authorize implements authorizer.Authorizer.
func (a *Authorizer) Authorize(ctx context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	if u := attrs.GetUser(); u == nil || u.GetName() == user.APIServerUser || slices.Contains(u.GetGroups(), user.SystemPrivilegedGroup) {
		return authorizer.DecisionNoOpinion, "", nil
	}
	review := SubjectAccessReview(attrs)
	for _, m := range a.Modules {
		out, err := envelope.ReviewAccess(ctx, m.Module.Module, m.Settings, review)
		callFailed := err != nil
		d, reason, err := DecideAuthz(m, out, err)
		if d == authorizer.DecisionNoOpinion {
			if err != nil {
				a.logger().Warn("authorization module failed; no opinion", "module", m.Name(), "err", err)
			}
			continue
		}
		if err != nil && !callFailed {
			// A deny in an answer that breaks the contract (allowed and denied both true).
			a.logger().Warn("authorization module answered a deny with an invalid answer; denied", "module", m.Name(), "err", err)
			err = nil
		}
		return d, reason, err
	}
	return authorizer.DecisionNoOpinion, "", nil
}

// ConditionsAwareAuthorize implements authorizer.Authorizer for a non-conditional authorizer.
func (a *Authorizer) ConditionsAwareAuthorize(ctx context.Context, attrs authorizer.Attributes) authorizer.ConditionsAwareDecision {
	return authorizer.ConditionsAwareDecisionFromParts(a.Authorize(ctx, attrs))
}

// EvaluateConditions implements authorizer.Authorizer: modules make no conditional decisions.
func (a *Authorizer) EvaluateConditions(context.Context, authorizer.ConditionsAwareDecision, authorizer.ConditionsData) (authorizer.Decision, string, error) {
	return authorizer.DecisionDeny, "", authorizer.ErrorConditionEvaluationNotSupported
}

// errCannotListRules is what `kubectl auth can-i --list` shows after "the list may be incomplete".
var errCannotListRules = errors.New("authorization modules (WASM) cannot list the rules they grant")

// RulesFor implements authorizer.RuleResolver.
func (a *Authorizer) RulesFor(context.Context, user.Info, string) ([]authorizer.ResourceRuleInfo, []authorizer.NonResourceRuleInfo, bool, error) {
	if len(a.Modules) == 0 {
		return nil, nil, false, nil
	}
	return nil, nil, true, errCannotListRules
}

func (a *Authorizer) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.Default()
	}
	return a.Logger
}
