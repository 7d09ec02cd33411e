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
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	utilcache "k8s.io/apimachinery/pkg/util/cache"

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
	// Decisions, when set, records each module's answer (the user, never the token).
	Decisions *DecisionLog
}

var _ authenticator.Token = (*TokenAuthenticator)(nil)

// AuthenticateToken implements authenticator.Token.
func (a *TokenAuthenticator) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	audiences, ok := authenticator.AudiencesFrom(ctx)
	if !ok {
		audiences = a.APIAudiences
	}
	for _, m := range a.Modules {
		began := time.Now()
		resp, ok, err := Authenticate(ctx, m, token, audiences)
		if a.Decisions != nil {
			a.record(m, resp, ok, envelope.RedactError(err, token), time.Since(began))
		}
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

// record adds a module's answer to the decision log (err without the token).
func (a *TokenAuthenticator) record(m Module, resp *authenticator.Response, ok bool, err error, took time.Duration) {
	d := Decision{Time: time.Now(), Module: m.Name(), Hook: "authentication", Operation: "authenticate",
		Result: ResultUnauthenticated, LatencyMicros: took.Microseconds()}
	switch {
	case err != nil:
		d.Result, d.Message = ResultFailed, "not authenticated (the next authenticator is asked): "+firstLine(err.Error())
	case ok && resp != nil && resp.User != nil:
		d.Result, d.User = ResultAuthenticated, resp.User.GetName()
	}
	a.Decisions.Record(d)
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
	// CacheTTL, when positive, caches the modules' decisions for requests with the same
	// attributes (user, groups, extra, verb, resource or path), as the webhook authorizer caches
	// a remote one's: Allow, Deny and NoOpinion alike, and only when every module asked
	// answered; a decision reached after a module failed is never cached.
	CacheTTL time.Duration
	// Decisions, when set, records each module's answer (cached decisions are not: no module
	// was asked).
	Decisions *DecisionLog
	cache     decisionCache
}

// decisionCache holds an Authorizer's cached decisions, made on first use.
type decisionCache struct {
	once sync.Once
	lru  *utilcache.LRUExpireCache
}

// authzCacheSize bounds the cached decisions, as the webhook authorizer's cache.
const authzCacheSize = 8192

// cachedDecision is what the cache keeps of a decision.
type cachedDecision struct {
	decision authorizer.Decision
	reason   string
}

var (
	_ authorizer.Authorizer   = (*Authorizer)(nil)
	_ authorizer.RuleResolver = (*Authorizer)(nil)
)

// Authorize implements authorizer.Authorizer.
func (a *Authorizer) Authorize(ctx context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	if u := attrs.GetUser(); u == nil || neverJudged(u.GetName(), u.GetGroups()) {
		return authorizer.DecisionNoOpinion, "", nil // before the review is built: most requests are these
	}
	return a.Review(ctx, SubjectAccessReview(attrs))
}

// neverJudged says the modules are never asked about this user: system:masters and the API
// server's own identity, so that no module can lock out the admin or the server.
func neverJudged(name string, groups []string) bool {
	return name == user.APIServerUser || slices.Contains(groups, user.SystemPrivilegedGroup)
}

// Review decides a SubjectAccessReview as Authorize decides the request it describes (the
// webhook bridge gets the review itself): no opinion for system:masters and the API server's
// own identity, the cache, then the modules in order.
func (a *Authorizer) Review(ctx context.Context, review *authorizationv1.SubjectAccessReview) (authorizer.Decision, string, error) {
	if neverJudged(review.Spec.User, review.Spec.Groups) {
		return authorizer.DecisionNoOpinion, "", nil
	}
	if a.CacheTTL <= 0 {
		d, reason, _, err := a.decide(ctx, review)
		return d, reason, err
	}
	key, err := json.Marshal(review.Spec)
	if err != nil {
		return authorizer.DecisionNoOpinion, "", fmt.Errorf("authorization modules: encode the request's attributes: %w", err)
	}
	lru := a.cache.get()
	if c, ok := lru.Get(string(key)); ok {
		cd := c.(cachedDecision)
		return cd.decision, cd.reason, nil
	}
	d, reason, answered, err := a.decide(ctx, review)
	if answered {
		lru.Add(string(key), cachedDecision{d, reason}, a.CacheTTL)
	}
	return d, reason, err
}

func (c *decisionCache) get() *utilcache.LRUExpireCache {
	c.once.Do(func() { c.lru = utilcache.NewLRUExpireCache(authzCacheSize) })
	return c.lru
}

// decide asks the modules in order; answered says every module asked answered (none failed),
// so that the decision may be cached.
func (a *Authorizer) decide(ctx context.Context, review *authorizationv1.SubjectAccessReview) (authorizer.Decision, string, bool, error) {
	answered := true
	for _, m := range a.Modules {
		began := time.Now()
		out, err := envelope.ReviewAccess(ctx, m.Module.Module, m.Settings, review)
		callFailed := err != nil
		d, reason, err := DecideAuthz(m, out, err)
		a.record(m, review, d, reason, err, time.Since(began))
		answered = answered && err == nil
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
		return d, reason, answered, err
	}
	return authorizer.DecisionNoOpinion, "", answered, nil
}

// record adds a module's answer to the decision log.
func (a *Authorizer) record(m AuthzModule, review *authorizationv1.SubjectAccessReview, d authorizer.Decision, reason string, err error, took time.Duration) {
	if a.Decisions == nil {
		return
	}
	rec := Decision{Time: time.Now(), Module: m.Name(), Hook: "authorization", User: review.Spec.User,
		Message: reason, LatencyMicros: took.Microseconds()}
	if ra := review.Spec.ResourceAttributes; ra != nil {
		rec.Operation, rec.Namespace, rec.Name = ra.Verb, ra.Namespace, ra.Name
		rec.Resource = resourcePath(ra.Group, ra.Version, ra.Resource, ra.Subresource)
	} else if nr := review.Spec.NonResourceAttributes; nr != nil {
		rec.Operation, rec.Resource = nr.Verb, nr.Path
	}
	switch d {
	case authorizer.DecisionAllow:
		rec.Result = ResultAllowed
	case authorizer.DecisionDeny:
		rec.Result = ResultDenied
	default:
		rec.Result = ResultNoOpinion
	}
	if err != nil {
		rec.Result = ResultFailed
		outcome := "no opinion"
		if d == authorizer.DecisionDeny {
			outcome = "denied"
		}
		rec.Message = outcome + " (the module failed): " + firstLine(err.Error())
	}
	a.Decisions.Record(rec)
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
