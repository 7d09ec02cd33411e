package envelope

import (
	"context"
	"encoding/json"

	authorizationv1 "k8s.io/api/authorization/v1"

	"github.com/wasmkube/wasmkube/wasm"
)

// ReviewAccess sends review, a SubjectAccessReview, to m's authz export and returns the module's
// answer as written (apiVersion and kind are set on review).
func ReviewAccess(ctx context.Context, m *wasm.Module, settings json.RawMessage, review *authorizationv1.SubjectAccessReview) (*authorizationv1.SubjectAccessReview, error) {
	review.APIVersion, review.Kind = "authorization.k8s.io/v1", "SubjectAccessReview"
	var out authorizationv1.SubjectAccessReview
	if err := Call(ctx, m, ExportAuthz, review, settings, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
