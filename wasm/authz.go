package wasm

import (
	"context"
	"encoding/json"
	"errors"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// ExportAuthz is the export that authorizes.
const ExportAuthz = "authz"

// SubjectAccessReview builds the review the module sees for a request's attributes.
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

// Authorize asks the module for a decision, as the original proof of concept did:
// allowed → Allow; denied → Deny; both → Deny with an error; neither → NoOpinion. reason passes
// through. An error is returned with DecisionNoOpinion; the caller applies its failure policy.
func (m *Module) Authorize(ctx context.Context, settings json.RawMessage, a authorizer.Attributes) (authorizer.Decision, string, error) {
	var out authorizationv1.SubjectAccessReview
	if err := m.CallEnvelope(ctx, ExportAuthz, SubjectAccessReview(a), settings, &out); err != nil {
		return authorizer.DecisionNoOpinion, "", err
	}
	return m.DecideAuthz(&out)
}

// DecideAuthz maps a module's SubjectAccessReview answer to a decision (see Authorize).
func (m *Module) DecideAuthz(out *authorizationv1.SubjectAccessReview) (authorizer.Decision, string, error) {
	st := out.Status
	switch {
	case st.Allowed && st.Denied:
		return authorizer.DecisionDeny, st.Reason, m.callError(ExportAuthz, KindInvalidResponse, errors.New("status.allowed and status.denied are both true"))
	case st.Denied:
		return authorizer.DecisionDeny, st.Reason, nil
	case st.Allowed:
		return authorizer.DecisionAllow, st.Reason, nil
	}
	return authorizer.DecisionNoOpinion, st.Reason, nil
}
