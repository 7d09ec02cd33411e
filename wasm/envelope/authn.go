package envelope

import (
	"context"
	"encoding/json"

	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/wasmkube/wasmkube/wasm"
)

// ReviewToken sends review, a TokenReview with spec.token and spec.audiences, to m's authn export
// and returns the module's answer as written (apiVersion and kind are set on review).
//
// # Notes
//
//   - The value of review.Spec.Token never appears in the error (its text, the module's error
//     answer, its stderr) nor in the debug log: a module may echo it. The answer itself is not
//     redacted: a caller printing it should use RedactTokens with the token.
func ReviewToken(ctx context.Context, m *wasm.Module, settings json.RawMessage, review *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
	review.APIVersion, review.Kind = "authentication.k8s.io/v1", "TokenReview"
	var out authenticationv1.TokenReview
	if err := call(ctx, m, ExportAuthn, review, settings, &out, review.Spec.Token); err != nil {
		return nil, err
	}
	return &out, nil
}
