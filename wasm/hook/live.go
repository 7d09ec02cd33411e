package hook

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"k8s.io/apiserver/pkg/admission/plugin/webhook"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// Generation is one set of modules: what the server's extensions run between two reloads.
type Generation struct {
	// Token authenticates bearer tokens (a TokenAuthenticator, usually behind a cache); nil:
	// no authentication modules.
	Token authenticator.Token
	// Authorizer asks the authorization modules; nil: none.
	Authorizer *Authorizer
	// Admission are the admission modules in order.
	Admission []AdmissionModule
	// Close closes the generation's modules. Live calls it once no request uses them any more.
	Close func() error
}

// Live holds the server's current Generation and swaps it for another while the server runs:
// the extensions it hands out (Token, Authorizer, and the admission plugin of NewLiveAdmission)
// are installed once and ask whichever generation is current when a request arrives.
//
// # Notes
//
//   - A request that started on a generation finishes on it: each call holds its generation
//     until it returns, and a replaced generation is closed only after its last call.
//   - A swap never fails a request: there is always a generation (an empty one answers "no
//     opinion", "not authenticated" and calls no admission module).
//   - Close closes the current generation and waits for the replaced ones to close.
type Live struct {
	logger    *slog.Logger
	decisions *DecisionLog

	mu      sync.RWMutex
	current *generation
	closed  bool
	// retiring counts the replaced generations not closed yet.
	retiring sync.WaitGroup
}

// generation is a Generation as the extensions use it: its admission modules described as
// webhooks, per phase, and the calls in flight on it.
type generation struct {
	Generation
	mutating, validating []webhook.WebhookAccessor
	inFlight             sync.WaitGroup
}

// moduleAccessor is an admission module described as the webhook it stands in for.
type moduleAccessor struct {
	webhook.WebhookAccessor
	module AdmissionModule
}

func newGeneration(g Generation) *generation {
	gen := &generation{Generation: g}
	for _, m := range g.Admission {
		a := moduleAccessor{accessorFor("wasm/"+m.Name(), m), m}
		if m.Mutating {
			gen.mutating = append(gen.mutating, a)
		} else {
			gen.validating = append(gen.validating, a)
		}
	}
	return gen
}

// NewLive returns a Live whose current generation is g; the admission plugin records its
// modules' decisions in decisions (nil: nowhere).
func NewLive(g Generation, logger *slog.Logger, decisions *DecisionLog) *Live {
	if logger == nil {
		logger = slog.Default()
	}
	return &Live{logger: logger, decisions: decisions, current: newGeneration(g)}
}

// Swap makes g the current generation and returns at once; the one it replaces is closed in
// the background once its calls in flight have returned. After Close, g is closed and an error
// returned.
func (l *Live) Swap(g Generation) error {
	gen := newGeneration(g)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		closeGeneration(gen, l.logger)
		return errors.New("the modules were closed: the server is stopping")
	}
	old := l.current
	l.current = gen
	l.retiring.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.retiring.Done()
		old.inFlight.Wait() // no call can join it: acquire takes the current generation under mu
		closeGeneration(old, l.logger)
	}()
	return nil
}

// Close closes the current generation (once no call uses it) and waits for the replaced ones.
// Calls after Close run on the closed modules and fail as their failure policies say (the
// server has stopped by then).
func (l *Live) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	cur := l.current
	// Later calls meet the same, closed, modules, but never join cur's count while it is waited
	// for (a WaitGroup must not grow from zero during a Wait).
	l.current = &generation{Generation: cur.Generation, mutating: cur.mutating, validating: cur.validating}
	l.mu.Unlock()
	cur.inFlight.Wait()
	err := closeGeneration(cur, l.logger)
	l.retiring.Wait()
	return err
}

func closeGeneration(g *generation, logger *slog.Logger) error {
	if g.Close == nil {
		return nil
	}
	err := g.Close()
	if err != nil {
		logger.Warn("closing replaced modules", "err", err)
	}
	return err
}

// acquire returns the current generation, held until release is called.
func (l *Live) acquire() (*generation, func()) {
	l.mu.RLock()
	g := l.current
	g.inFlight.Add(1)
	l.mu.RUnlock()
	return g, g.inFlight.Done
}

// Token returns the authenticator that asks the current generation's authentication modules.
func (l *Live) Token() authenticator.Token { return liveToken{l} }

// Authorizer returns the authorizer (and rule resolver) that asks the current generation's
// authorization modules.
func (l *Live) Authorizer() LiveAuthorizer { return LiveAuthorizer{l} }

type liveToken struct{ l *Live }

func (t liveToken) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	g, release := t.l.acquire()
	defer release()
	if g.Token == nil {
		return nil, false, nil
	}
	return g.Token.AuthenticateToken(ctx, token)
}

// LiveAuthorizer is the authorizer of a Live: it asks the current generation's Authorizer, and
// has no opinion when there is none.
type LiveAuthorizer struct{ l *Live }

var (
	_ authorizer.Authorizer   = LiveAuthorizer{}
	_ authorizer.RuleResolver = LiveAuthorizer{}
)

// Authorize implements authorizer.Authorizer.
func (a LiveAuthorizer) Authorize(ctx context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	g, release := a.l.acquire()
	defer release()
	if g.Authorizer == nil {
		return authorizer.DecisionNoOpinion, "", nil
	}
	return g.Authorizer.Authorize(ctx, attrs)
}

// ConditionsAwareAuthorize implements authorizer.Authorizer.
func (a LiveAuthorizer) ConditionsAwareAuthorize(ctx context.Context, attrs authorizer.Attributes) authorizer.ConditionsAwareDecision {
	return authorizer.ConditionsAwareDecisionFromParts(a.Authorize(ctx, attrs))
}

// EvaluateConditions implements authorizer.Authorizer: modules make no conditional decisions.
func (a LiveAuthorizer) EvaluateConditions(context.Context, authorizer.ConditionsAwareDecision, authorizer.ConditionsData) (authorizer.Decision, string, error) {
	return authorizer.DecisionDeny, "", authorizer.ErrorConditionEvaluationNotSupported
}

// RulesFor implements authorizer.RuleResolver.
func (a LiveAuthorizer) RulesFor(ctx context.Context, u user.Info, namespace string) ([]authorizer.ResourceRuleInfo, []authorizer.NonResourceRuleInfo, bool, error) {
	g, release := a.l.acquire()
	defer release()
	if g.Authorizer == nil {
		return nil, nil, false, nil
	}
	return g.Authorizer.RulesFor(ctx, u, namespace)
}

// TokenGuard counts the calls into a generation's token authenticator. The authentication cache
// (k8s.io/apiserver's) makes a lookup in a goroutine of its own that may outlive the request
// that started it, and so the request's hold on its generation: Close waits for such calls
// before the generation's modules close, and refuses later ones (not authenticated).
type TokenGuard struct {
	inner  authenticator.Token
	mu     sync.Mutex
	idle   *sync.Cond
	calls  int
	closed bool
}

// NewTokenGuard guards inner.
func NewTokenGuard(inner authenticator.Token) *TokenGuard {
	g := &TokenGuard{inner: inner}
	g.idle = sync.NewCond(&g.mu)
	return g
}

// AuthenticateToken implements authenticator.Token.
func (g *TokenGuard) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, false, nil
	}
	g.calls++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.calls--
		if g.calls == 0 {
			g.idle.Broadcast()
		}
		g.mu.Unlock()
	}()
	return g.inner.AuthenticateToken(ctx, token)
}

// Close refuses new calls and waits for those running.
func (g *TokenGuard) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for g.calls > 0 {
		g.idle.Wait()
	}
}
