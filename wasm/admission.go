package wasm

import (
	"context"
	"encoding/json"
	"fmt"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExportValidate is the export that admits, for validating and mutating modules alike.
const ExportValidate = "validate"

// PatchTypeFull marks a patch that holds the whole edited object (the original module ABI's
// mutation format).
const PatchTypeFull admissionv1.PatchType = "Full"

// AdmissionResult is a module's admission answer, checked.
type AdmissionResult struct {
	Allowed bool
	// Result is the module's status (message, reason, code) when it sent one.
	Result *metav1.Status
	// Patch and PatchType are set when a mutating module changed the object: PatchTypeFull
	// (Patch is the whole object) or JSONPatch (RFC 6902, already checked to decode).
	Patch     []byte
	PatchType admissionv1.PatchType
	Warnings  []string
	// AuditAnnotations as the module sent them; prefix them with the module name when recording.
	AuditAnnotations map[string]string
}

// Admit sends req to the module's validate export, as an admission.k8s.io/v1 AdmissionReview
// built exactly as for a webhook, and checks the answer: kind and apiVersion, the echoed uid, no
// patch from a validating module, a patchType with every patch, a JSONPatch that decodes and
// whose operations have the members RFC 6902 requires of them.
func (m *Module) Admit(ctx context.Context, settings json.RawMessage, req *admissionv1.AdmissionRequest, mutating bool) (*AdmissionResult, error) {
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	}
	var out admissionv1.AdmissionReview
	if err := m.CallEnvelope(ctx, ExportValidate, &review, settings, &out); err != nil {
		return nil, err
	}
	return m.CheckAdmission(req, &out, mutating)
}

// CheckAdmission checks a module's AdmissionReview answer to req (see Admit).
func (m *Module) CheckAdmission(req *admissionv1.AdmissionRequest, out *admissionv1.AdmissionReview, mutating bool) (*AdmissionResult, error) {
	invalid := func(format string, args ...any) error {
		return m.callError(ExportValidate, KindInvalidResponse, fmt.Errorf(format, args...))
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
	res := &AdmissionResult{Allowed: r.Allowed, Result: r.Result, Warnings: r.Warnings, AuditAnnotations: r.AuditAnnotations}
	if len(r.Patch) == 0 {
		return res, nil
	}
	switch {
	case !mutating:
		return nil, invalid("a validating module may not patch")
	case r.PatchType == nil:
		return nil, invalid("a patch needs a patchType (JSONPatch or Full)")
	case *r.PatchType == admissionv1.PatchTypeJSONPatch:
		if err := checkJSONPatch(r.Patch); err != nil {
			return nil, invalid("patch is not an RFC 6902 JSON patch: %v", err)
		}
	case *r.PatchType == PatchTypeFull:
		if !json.Valid(r.Patch) {
			return nil, invalid("a Full patch must hold the whole object as JSON")
		}
	default:
		return nil, invalid("unknown patchType %q (JSONPatch or Full)", *r.PatchType)
	}
	res.Patch, res.PatchType = r.Patch, *r.PatchType
	return res, nil
}

// checkJSONPatch decodes patch and checks that each operation is one RFC 6902 defines and has
// the members it requires: json-patch applies an operation without them by guessing or, for a
// replace of the whole document without a value, by panicking.
func checkJSONPatch(patch []byte) error {
	ops, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return err
	}
	for i, op := range ops {
		need := []string{"path"}
		switch kind := op.Kind(); kind {
		case "add", "replace", "test":
			need = append(need, "value")
		case "move", "copy":
			need = append(need, "from")
		case "remove":
		default:
			return fmt.Errorf("operation %d: op %q is not add, remove, replace, move, copy or test", i, kind)
		}
		for _, member := range need {
			if _, ok := op[member]; !ok {
				return fmt.Errorf("operation %d (%s) has no %q", i, op.Kind(), member)
			}
		}
	}
	return nil
}

// DenialMessage is the message a client sees when the module rejects a request.
func DenialMessage(module string, status *metav1.Status) string {
	why := "without explanation"
	switch {
	case status != nil && status.Message != "":
		why = status.Message
	case status != nil && status.Reason != "":
		why = string(status.Reason)
	}
	return fmt.Sprintf("admission WASM module %q denied the request: %s", module, why)
}
