package hook

import (
	"context"
	"errors"
	"fmt"
	"slices"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
)

// The decisions the API server makes from one module's answer. The server's extension points
// and `wasmkube module run` both call them, so both decide alike.

// Authenticate asks m who token belongs to, as the original proof of concept did, and decides
// as DecideAuthn does. The token's value never appears in the error.
func Authenticate(ctx context.Context, m Module, token string, audiences []string) (*authenticator.Response, bool, error) {
	review := authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences}}
	out, err := envelope.ReviewToken(ctx, m.Module, m.Settings, &review)
	if err != nil {
		return nil, false, err
	}
	resp, ok, err := DecideAuthn(m.Module, out, audiences)
	return resp, ok, envelope.RedactError(err, token)
}

// DecideAuthn maps m's TokenReview answer to an authentication result: status.authenticated,
// user and audiences are used.
//
// # Notes
//
//   - Not authenticated with status.error set is an error; without it, simply (nil, false, nil).
//   - status.audiences is intersected with audiences; a module that names none is taken to mean
//     all of them; an empty intersection is "not authenticated".
//   - The user gets system:authenticated added: modules sit outside the built-in chain, where
//     nothing else adds it.
func DecideAuthn(m *wasm.Module, out *authenticationv1.TokenReview, audiences []string) (*authenticator.Response, bool, error) {
	st := out.Status
	if !st.Authenticated {
		if st.Error != "" {
			return nil, false, m.Fail(envelope.ExportAuthn, wasm.KindModuleError, errors.New(st.Error))
		}
		return nil, false, nil
	}
	granted := audiences
	if len(audiences) > 0 && len(st.Audiences) > 0 {
		granted = nil
		for _, a := range st.Audiences {
			if slices.Contains(audiences, a) {
				granted = append(granted, a)
			}
		}
		if len(granted) == 0 {
			return nil, false, nil
		}
	}
	if st.User.Username == "" {
		return nil, false, m.Fail(envelope.ExportAuthn, wasm.KindInvalidResponse, errors.New("authenticated without a username"))
	}
	// out is this call's own answer: its groups are extended in place.
	info := &user.DefaultInfo{Name: st.User.Username, UID: st.User.UID, Groups: st.User.Groups}
	if !slices.Contains(info.Groups, user.AllAuthenticated) {
		info.Groups = append(info.Groups, user.AllAuthenticated)
	}
	if len(st.User.Extra) > 0 {
		info.Extra = make(map[string][]string, len(st.User.Extra))
		for k, v := range st.User.Extra {
			info.Extra[k] = v
		}
	}
	return &authenticator.Response{User: info, Audiences: granted}, true, nil
}

// SubjectAccessReview builds the review an authorization module sees for a request's attributes.
func SubjectAccessReview(a authorizer.Attributes) *authorizationv1.SubjectAccessReview {
	sar := &authorizationv1.SubjectAccessReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authorization.k8s.io/v1", Kind: "SubjectAccessReview"},
	}
	if u := a.GetUser(); u != nil {
		sar.Spec.User, sar.Spec.UID, sar.Spec.Groups = u.GetName(), u.GetUID(), u.GetGroups()
		if extra := u.GetExtra(); len(extra) > 0 {
			sar.Spec.Extra = make(map[string]authorizationv1.ExtraValue, len(extra))
			for k, v := range extra {
				sar.Spec.Extra[k] = v
			}
		}
	}
	if a.IsResourceRequest() {
		sar.Spec.ResourceAttributes = &authorizationv1.ResourceAttributes{
			Namespace: a.GetNamespace(), Verb: a.GetVerb(), Group: a.GetAPIGroup(), Version: a.GetAPIVersion(),
			Resource: a.GetResource(), Subresource: a.GetSubresource(), Name: a.GetName(),
		}
	} else {
		sar.Spec.NonResourceAttributes = &authorizationv1.NonResourceAttributes{Path: a.GetPath(), Verb: a.GetVerb()}
	}
	return sar
}

// DecideAuthz maps m's SubjectAccessReview answer (or the error of its call, callErr) to a
// decision, as the original proof of concept did: allowed → Allow; denied → Deny; neither →
// NoOpinion; reason passes through.
//
// # Notes
//
//   - A deny always stands, even in an invalid answer (allowed and denied both true: Deny with
//     the error, for the log).
//   - A failed call (or an invalid answer) is NoOpinion with the error, or Deny with the error
//     when m's failure policy is Deny.
func DecideAuthz(m AuthzModule, out *authorizationv1.SubjectAccessReview, callErr error) (authorizer.Decision, string, error) {
	if callErr != nil {
		return m.failed(callErr)
	}
	st := out.Status
	switch {
	case st.Allowed && st.Denied:
		reason := st.Reason
		if reason == "" {
			reason = fmt.Sprintf("authorization module %q denied the request", m.Name())
		}
		return authorizer.DecisionDeny, reason, m.Fail(envelope.ExportAuthz, wasm.KindInvalidResponse, errors.New("status.allowed and status.denied are both true"))
	case st.Denied:
		return authorizer.DecisionDeny, st.Reason, nil
	case st.Allowed:
		return authorizer.DecisionAllow, st.Reason, nil
	}
	return authorizer.DecisionNoOpinion, st.Reason, nil
}

// failed applies m's failure policy to a failed call.
func (m AuthzModule) failed(err error) (authorizer.Decision, string, error) {
	if m.FailurePolicy == Deny {
		return authorizer.DecisionDeny, fmt.Sprintf("authorization module %q failed (failurePolicy Deny)", m.Name()), err
	}
	return authorizer.DecisionNoOpinion, "", err
}

// DecisionName names an authorization decision as the API server's audit log and
// SubjectAccessReviews do: Allow, Deny or NoOpinion.
func DecisionName(d authorizer.Decision) string {
	switch d {
	case authorizer.DecisionAllow:
		return "Allow"
	case authorizer.DecisionDeny:
		return "Deny"
	}
	return "NoOpinion"
}
