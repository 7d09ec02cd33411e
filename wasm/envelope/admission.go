package envelope

import (
	"context"
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/wasmkube/wasmkube/wasm"
)

// PatchTypeFull marks a patch that holds the whole edited object (the original module ABI's
// mutation format).
const PatchTypeFull admissionv1.PatchType = "Full"

// Admit sends review, an admission.k8s.io/v1 AdmissionReview as a webhook receives it, to m's
// validate export and returns the module's response once CheckAdmission found it keeps the
// ABI's contract.
func Admit(ctx context.Context, m *wasm.Module, settings json.RawMessage, review *admissionv1.AdmissionReview, mutating bool) (*admissionv1.AdmissionResponse, error) {
	out, err := Review(ctx, m, settings, review)
	if err != nil {
		return nil, err
	}
	return CheckAdmission(m, review.Request, out, mutating)
}

// Review sends review to m's validate export and returns the module's answer as written
// (apiVersion and kind are set on review).
func Review(ctx context.Context, m *wasm.Module, settings json.RawMessage, review *admissionv1.AdmissionReview) (*admissionv1.AdmissionReview, error) {
	review.APIVersion, review.Kind = "admission.k8s.io/v1", "AdmissionReview"
	var out admissionv1.AdmissionReview
	if err := Call(ctx, m, ExportValidate, review, settings, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CheckAdmission checks m's answer out to the request req: kind and apiVersion, a response with
// the request's uid, no patch from a validating module (mutating false), a patchType with every
// patch, JSONPatch or Full. Failures are KindInvalidResponse. The patch is checked further, and
// decoded, where it is applied (package hook).
func CheckAdmission(m *wasm.Module, req *admissionv1.AdmissionRequest, out *admissionv1.AdmissionReview, mutating bool) (*admissionv1.AdmissionResponse, error) {
	invalid := func(format string, args ...any) error {
		return m.Fail(ExportValidate, wasm.KindInvalidResponse, fmt.Errorf(format, args...))
	}
	switch {
	case out.Kind != "AdmissionReview" || out.APIVersion != "admission.k8s.io/v1":
		return nil, invalid("expected admission.k8s.io/v1 AdmissionReview, got %s %s", out.APIVersion, out.Kind)
	case out.Response == nil:
		return nil, invalid("the AdmissionReview has no response")
	case out.Response.UID != req.UID:
		return nil, invalid("response uid %q does not match request uid %q", out.Response.UID, req.UID)
	}
	r := out.Response
	if len(r.Patch) == 0 {
		r.PatchType = nil
		return r, nil
	}
	switch {
	case !mutating:
		return nil, invalid("a validating module may not patch")
	case r.PatchType == nil:
		return nil, invalid("a patch needs a patchType (JSONPatch or Full)")
	case *r.PatchType != admissionv1.PatchTypeJSONPatch && *r.PatchType != PatchTypeFull:
		return nil, invalid("unknown patchType %q (JSONPatch or Full)", *r.PatchType)
	}
	return r, nil
}
