package hook

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// tokenFunc is an authenticator.Token of a function.
type tokenFunc func(ctx context.Context, token string) (*authenticator.Response, bool, error)

func (f tokenFunc) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	return f(ctx, token)
}

// TestLiveSwapWaitsForCallsInFlight: a call that began on a generation finishes on it; the
// swap returns at once, later calls go to the new generation, and the old one is closed only
// after its last call returned. Close closes the current one; a swap after Close is refused and
// closes what it was given.
func TestLiveSwapWaitsForCallsInFlight(t *testing.T) {
	entered, unblock := make(chan struct{}), make(chan struct{})
	var oldClosed, newClosed, lateClosed atomic.Bool
	old := Generation{
		Token: tokenFunc(func(context.Context, string) (*authenticator.Response, bool, error) {
			close(entered)
			<-unblock
			return &authenticator.Response{User: &user.DefaultInfo{Name: "old"}}, true, nil
		}),
		Close: func() error { oldClosed.Store(true); return nil },
	}
	live := NewLive(old, nil, nil)
	token := live.Token()
	answered := make(chan string)
	go func() {
		resp, _, _ := token.AuthenticateToken(context.Background(), "t")
		answered <- resp.User.GetName()
	}()
	<-entered
	next := Generation{
		Token: tokenFunc(func(context.Context, string) (*authenticator.Response, bool, error) {
			return &authenticator.Response{User: &user.DefaultInfo{Name: "new"}}, true, nil
		}),
		Close: func() error { newClosed.Store(true); return nil },
	}
	if err := live.Swap(next); err != nil {
		t.Fatal(err)
	}
	if resp, ok, err := token.AuthenticateToken(context.Background(), "t"); !ok || err != nil || resp.User.GetName() != "new" {
		t.Fatalf("a call after the swap: %v %v %v, want the new generation", resp, ok, err)
	}
	time.Sleep(50 * time.Millisecond)
	if oldClosed.Load() {
		t.Fatal("the old generation was closed while a call ran on it")
	}
	close(unblock)
	if got := <-answered; got != "old" {
		t.Errorf("the call in flight answered %q, want old", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !oldClosed.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !oldClosed.Load() {
		t.Fatal("the old generation was not closed after its last call")
	}
	if err := live.Close(); err != nil || !newClosed.Load() {
		t.Fatalf("Close: %v, closed %v", err, newClosed.Load())
	}
	late := Generation{Close: func() error { lateClosed.Store(true); return nil }}
	if err := live.Swap(late); err == nil || !lateClosed.Load() {
		t.Errorf("a swap after Close: %v, closed %v; want an error and the generation closed", err, lateClosed.Load())
	}
}

// TestLiveEmptyGeneration: with no modules, nobody is authenticated, the authorizer has no
// opinion and lists no rules, and admission calls nothing.
func TestLiveEmptyGeneration(t *testing.T) {
	live := NewLive(Generation{}, nil, nil)
	if resp, ok, err := live.Token().AuthenticateToken(context.Background(), "t"); resp != nil || ok || err != nil {
		t.Errorf("authenticate: %v %v %v", resp, ok, err)
	}
	d, _, err := live.Authorizer().Authorize(context.Background(), authorizer.AttributesRecord{User: &user.DefaultInfo{Name: "u"}, Verb: "get"})
	if d != authorizer.DecisionNoOpinion || err != nil {
		t.Errorf("authorize: %v %v", d, err)
	}
	if _, _, incomplete, err := live.Authorizer().RulesFor(context.Background(), &user.DefaultInfo{Name: "u"}, ""); incomplete || err != nil {
		t.Errorf("rules: %v %v", incomplete, err)
	}
}

// TestLiveAdmission: the plugin decides with the generation current when a phase begins, a
// request already in a module finishes with it, and modules added by a swap are called.
func TestLiveAdmission(t *testing.T) {
	entered, unblock := make(chan struct{}), make(chan struct{})
	slow := &fakeAdmitter{name: "slow", answer: func(review *admissionv1.AdmissionReview) (*admissionv1.AdmissionResponse, error) {
		close(entered)
		<-unblock
		return &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}, nil
	}}
	live := NewLive(Generation{Admission: []AdmissionModule{{Admitter: slow, Rules: allOps}}}, nil, nil)
	a, err := NewLiveAdmission(live, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	completePlugin(t, a, nil, nil)
	inFlight := make(chan error)
	go func() {
		inFlight <- a.Validate(context.Background(), createCM("a", "x", nil, nil).attributes(), pluginObjects)
	}()
	<-entered
	deny := &fakeAdmitter{name: "deny", err: errors.New("no")}
	if err := live.Swap(Generation{Admission: []AdmissionModule{{Admitter: deny, Rules: allOps}}}); err != nil {
		t.Fatal(err)
	}
	err = a.Validate(context.Background(), createCM("a", "y", nil, nil).attributes(), pluginObjects)
	if err == nil || !strings.Contains(err.Error(), `"deny"`) {
		t.Errorf("after the swap: %v, want the new module's failure (failurePolicy Fail)", err)
	}
	close(unblock)
	if err := <-inFlight; err != nil {
		t.Errorf("the request in flight: %v, want the old module's allow", err)
	}
	if slow.calls() != 1 || deny.calls() != 1 {
		t.Errorf("calls: slow %d, deny %d", slow.calls(), deny.calls())
	}
	if err := live.Swap(Generation{}); err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(context.Background(), createCM("a", "z", nil, nil).attributes(), pluginObjects); err != nil || deny.calls() != 1 {
		t.Errorf("no modules: %v, deny called %d times", err, deny.calls())
	}
}

// TestTokenGuard: Close waits for a call running (as the authentication cache's lookup that
// outlived its request) and later calls authenticate no one.
func TestTokenGuard(t *testing.T) {
	entered, unblock := make(chan struct{}), make(chan struct{})
	g := NewTokenGuard(tokenFunc(func(context.Context, string) (*authenticator.Response, bool, error) {
		close(entered)
		<-unblock
		return &authenticator.Response{User: &user.DefaultInfo{Name: "u"}}, true, nil
	}))
	go func() { _, _, _ = g.AuthenticateToken(context.Background(), "t") }()
	<-entered
	closed := make(chan struct{})
	go func() { g.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a call ran")
	case <-time.After(50 * time.Millisecond):
	}
	close(unblock)
	<-closed
	if resp, ok, err := g.AuthenticateToken(context.Background(), "t"); resp != nil || ok || err != nil {
		t.Errorf("after Close: %v %v %v, want not authenticated", resp, ok, err)
	}
}
