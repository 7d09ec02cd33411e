package wasm

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// ExportAuthn is the export that authenticates.
const ExportAuthn = "authn"

// Authenticate asks the module who token belongs to, as the original proof of concept did: a
// TokenReview with spec.token and spec.audiences (the API audiences) goes in; from the answer,
// status.authenticated, user and audiences are used.
//
// # Notes
//
//   - Not authenticated with status.error set is an error; without it, simply (nil, false, nil).
//   - status.audiences is intersected with audiences; a module that names none is taken to mean
//     all of them; an empty intersection is "not authenticated".
//   - The returned user carries the module's groups as they are: adding system:authenticated is
//     the caller's job (it depends on where the authenticator sits).
//   - The token's value never appears in the error (its text, the module's status.error, its
//     stderr) nor in the debug log: a module may echo it.
func (m *Module) Authenticate(ctx context.Context, settings json.RawMessage, token string, audiences []string) (*authenticator.Response, bool, error) {
	review := authenticationv1.TokenReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenReview"},
		Spec:     authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences},
	}
	out, err := m.ReviewToken(ctx, settings, &review)
	if err != nil {
		return nil, false, err
	}
	resp, ok, err := m.DecideAuthn(out, audiences)
	return resp, ok, RedactError(err, token)
}

// ReviewToken sends review to the module's authn export and returns its answer as written. The
// value of review.Spec.Token is redacted from the error and the debug log; the answer itself is
// not redacted (a caller printing it should use RedactTokens with the token).
func (m *Module) ReviewToken(ctx context.Context, settings json.RawMessage, review *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
	var out authenticationv1.TokenReview
	if err := m.callEnvelope(ctx, ExportAuthn, review, settings, &out, review.Spec.Token); err != nil {
		return nil, err
	}
	return &out, nil
}

// DecideAuthn maps a module's TokenReview answer to an authentication result (see Authenticate).
func (m *Module) DecideAuthn(out *authenticationv1.TokenReview, audiences []string) (*authenticator.Response, bool, error) {
	st := out.Status
	if !st.Authenticated {
		if st.Error != "" {
			return nil, false, m.callError(ExportAuthn, KindModuleError, errors.New(st.Error))
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
	info := &user.DefaultInfo{Name: st.User.Username, UID: st.User.UID, Groups: st.User.Groups}
	if len(st.User.Extra) > 0 {
		info.Extra = make(map[string][]string, len(st.User.Extra))
		for k, v := range st.User.Extra {
			info.Extra[k] = v
		}
	}
	if info.Name == "" {
		return nil, false, m.callError(ExportAuthn, KindInvalidResponse, errors.New("authenticated without a username"))
	}
	return &authenticator.Response{User: info, Audiences: granted}, true, nil
}
