package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
)

// AdmissionDecision is what the API server makes of one admission module's answer to one
// request. The admission plugin acts on it; `wasmkube module run` prints it.
type AdmissionDecision struct {
	// Module is the module's name.
	Module string
	// Denied, when set, is what the client gets: the module's denial (its status, see Denial)
	// or, under failurePolicy Fail, its failure (500). Nil: the request goes on.
	Denied *apierrors.StatusError
	// Patch is the change to make to the object (nil: none): a decoded JSON patch or a whole
	// object. Never set in monitor mode.
	Patch *Patch
	// Warnings go to the client.
	Warnings []string
	// AuditAnnotations are recorded in the audit event, each key prefixed with "MODULE/".
	AuditAnnotations map[string]string
	// Failure is why the module failed (its call or its answer), with every detail, for the
	// server's log; nil when it answered.
	Failure error
	// FailedOpen says the failure was ignored (failurePolicy Ignore).
	FailedOpen bool
	// Verdict is, in monitor mode, what the module would have decided; empty otherwise.
	Verdict string
	// why is, for a denial by the module, its message without the server's prefix.
	why string
}

// Patch is a module's change to the object, decoded once.
type Patch struct {
	// Type is JSONPatch or Full (the envelope ABI's whole edited object).
	Type admissionv1.PatchType
	// JSON is the patch as the module sent it, for display.
	JSON []byte
	// Ops are the operations of a JSONPatch, checked against RFC 6902.
	Ops jsonpatch.Patch
}

// Apply returns object (JSON) as the patch leaves it: the JSON patch applied, or the whole
// object of a Full patch. In the server the result is then decoded as the object's kind and
// defaulted; Apply does neither (wasmkube module test compares what a module wrote).
func (p *Patch) Apply(object []byte) ([]byte, error) {
	if p.Type == envelope.PatchTypeFull {
		return p.JSON, nil
	}
	out, err := applyJSONPatch(p.Ops, object)
	if err != nil {
		return nil, fmt.Errorf("apply JSON patch: %w", err)
	}
	return out, nil
}

// Describe says what the API server does with a request after the decision d, in a few lines:
// the verdict, then the patch, the warnings and the audit annotations (wasmkube module run and
// module test print it).
func (d *AdmissionDecision) Describe() string {
	var b strings.Builder
	switch {
	case d.Denied != nil && d.Failure != nil:
		fmt.Fprintf(&b, "rejected (HTTP %d): %s", d.Denied.ErrStatus.Code, d.Denied.ErrStatus.Message)
	case d.Denied != nil:
		fmt.Fprintf(&b, "denied (HTTP %d): %s", d.Denied.ErrStatus.Code, d.Denied.ErrStatus.Message)
	case d.FailedOpen:
		b.WriteString("allowed: the module failed and its failurePolicy is Ignore")
	default:
		b.WriteString("allowed")
	}
	if d.Patch != nil {
		fmt.Fprintf(&b, "\npatch (%s): %s", d.Patch.Type, d.Patch.JSON)
	}
	for _, w := range d.Warnings {
		fmt.Fprintf(&b, "\nwarning: %s", w)
	}
	for _, k := range slices.Sorted(maps.Keys(d.AuditAnnotations)) {
		fmt.Fprintf(&b, "\naudit annotation %s: %s", k, d.AuditAnnotations[k])
	}
	return b.String()
}

// DecideAdmission decides from m's answer res to a request, or from the error of its call
// (callErr), as the admission plugin does:
//
//   - An answer that denies is a denial: its status, m.Message when set, code 403 unless the
//     module named one of at least 400 (Denial).
//   - A patch (only when allowed) is decoded and checked; a patch from a validating module or
//     one that breaks RFC 6902 is a failure of the module (KindInvalidResponse).
//   - A failure rejects the request with 500 (failurePolicy Fail, the default) or lets it pass
//     with the audit annotation MODULE/failed-open (Ignore). Clients learn only the kind of
//     failure (failureMessage); Failure keeps the details for the log.
//   - In monitor mode the request always passes: Verdict and the annotation MODULE/monitor say
//     what the module would have decided; its patch is dropped.
//   - Audit annotations are prefixed with the module's name; warnings pass through.
func DecideAdmission(m AdmissionModule, res *admissionv1.AdmissionResponse, callErr error) *AdmissionDecision {
	d := &AdmissionDecision{Module: m.Name()}
	err := callErr
	if err == nil && res == nil {
		err = &wasm.CallError{Module: m.Name(), Export: envelope.ExportValidate, Kind: wasm.KindMissingResponse, Err: errors.New("the module gave no answer")}
	}
	if err == nil && res.Allowed {
		d.Patch, err = decodePatch(m, res)
	}
	if err != nil {
		d.Failure = err
	}
	if m.Monitor {
		return d.monitor(m.Name(), res)
	}
	if err != nil {
		return d.failed(m, err)
	}
	d.Warnings = res.Warnings
	d.AuditAnnotations = prefixed(m.Name(), res.AuditAnnotations)
	if !res.Allowed {
		status := m.status(res.Result)
		d.Patch, d.Denied, d.why = nil, Denial(m.Name(), status), denialWhy(status)
	}
	return d
}

// status is the status a denial shows: the module's, or m.Message with its code and reason.
func (m AdmissionModule) status(result *metav1.Status) *metav1.Status {
	if m.Message == "" {
		return result
	}
	s := &metav1.Status{Message: m.Message}
	if result != nil {
		s.Code, s.Reason = result.Code, result.Reason
	}
	return s
}

// monitor records what a module in monitor mode would have decided; the request passes.
func (d *AdmissionDecision) monitor(module string, res *admissionv1.AdmissionResponse) *AdmissionDecision {
	switch {
	case d.Failure != nil:
		d.Verdict = "failed: " + failureMessage(d.Failure)
	case !res.Allowed:
		d.Verdict = "would deny: " + Denial(module, res.Result).Error()
	case d.Patch != nil:
		d.Verdict = "would mutate"
	default:
		d.Verdict = "would allow"
	}
	d.Patch = nil
	d.AuditAnnotations = map[string]string{module + "/monitor": d.Verdict}
	return d
}

// failed applies m's failure policy to its failure err.
func (d *AdmissionDecision) failed(m AdmissionModule, err error) *AdmissionDecision {
	d.Patch = nil
	if m.FailurePolicy == admissionregistrationv1.Ignore {
		d.FailedOpen = true
		d.AuditAnnotations = map[string]string{m.Name() + "/failed-open": failureMessage(err)}
		return d
	}
	d.Denied = apierrors.NewInternalError(fmt.Errorf("admission WASM module %q failed: %s", m.Name(), failureMessage(err)))
	return d
}

// PatchFailed is d after the module's patch could not be applied (err): the module's failure
// policy decides, as for any other failure; the module's warnings and audit annotations stay, as
// a webhook's do.
func (d *AdmissionDecision) PatchFailed(m AdmissionModule, err error) *AdmissionDecision {
	f := m.Failed(err)
	f.Warnings = d.Warnings
	if len(d.AuditAnnotations) > 0 {
		annotations := maps.Clone(d.AuditAnnotations)
		maps.Copy(annotations, f.AuditAnnotations)
		f.AuditAnnotations = annotations
	}
	return f
}

// Failed is the decision after the module failed in a way the server found after its answer
// (err): the module's failure policy decides, as for any other failure.
func (m AdmissionModule) Failed(err error) *AdmissionDecision {
	d := &AdmissionDecision{Module: m.Name(), Failure: err}
	if m.Monitor {
		return d.monitor(m.Name(), &admissionv1.AdmissionResponse{Allowed: true})
	}
	return d.failed(m, err)
}

func prefixed(module string, annotations map[string]string) map[string]string {
	if len(annotations) == 0 {
		return nil
	}
	out := make(map[string]string, len(annotations))
	for k, v := range maps.All(annotations) {
		out[module+"/"+k] = v
	}
	return out
}

// decodePatch decodes the patch of an allowing answer, once: a JSONPatch into checked
// operations, a Full patch as the whole object (a JSON object). No patch: nil. A validating
// module may not patch (the envelope ABI refuses it too; the phase would apply it).
func decodePatch(m AdmissionModule, res *admissionv1.AdmissionResponse) (*Patch, error) {
	if len(res.Patch) == 0 {
		return nil, nil
	}
	invalid := func(err error) error {
		return &wasm.CallError{Module: m.Name(), Export: envelope.ExportValidate, Kind: wasm.KindInvalidResponse, Err: err}
	}
	if !m.Mutating {
		return nil, invalid(errors.New("a validating module may not patch"))
	}
	if res.PatchType == nil {
		return nil, invalid(errors.New("a patch needs a patchType (JSONPatch or Full)"))
	}
	p := &Patch{Type: *res.PatchType, JSON: res.Patch}
	switch p.Type {
	case admissionv1.PatchTypeJSONPatch:
		ops, err := decodeJSONPatch(res.Patch)
		if err != nil {
			return nil, invalid(err)
		}
		p.Ops = ops
	case envelope.PatchTypeFull:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(res.Patch, &obj); err != nil || obj == nil {
			return nil, invalid(errors.New("a Full patch must hold the whole object as JSON"))
		}
	default:
		return nil, invalid(fmt.Errorf("unknown patchType %q (JSONPatch or Full)", p.Type))
	}
	return p, nil
}

// decodeJSONPatch decodes patch and checks that each operation is one RFC 6902 defines and has
// the members it requires: json-patch applies an operation without them by guessing or, for a
// replace of the whole document without a value, by panicking.
func decodeJSONPatch(patch []byte) (jsonpatch.Patch, error) {
	ops, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, fmt.Errorf("patch is not an RFC 6902 JSON patch: %w", err)
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
			return nil, fmt.Errorf("patch is not an RFC 6902 JSON patch: operation %d: op %q is not add, remove, replace, move, copy or test", i, kind)
		}
		for _, member := range need {
			if _, ok := op[member]; !ok {
				return nil, fmt.Errorf("patch is not an RFC 6902 JSON patch: operation %d (%s) has no %q", i, op.Kind(), member)
			}
		}
	}
	return ops, nil
}

// failureMessage is what a client learns of a module's failure: its kind (trap, timeout,
// exit code…) and, for a module's own error answer, that message; never its stderr, nor the
// details of a broken answer, which may hold data of other requests. The server log has them.
func failureMessage(err error) string {
	var ce *wasm.CallError
	if !errors.As(err, &ce) {
		return err.Error() // the host's own message (a patch that does not apply, …)
	}
	switch ce.Kind {
	case wasm.KindModuleError:
		if ce.Err != nil {
			return "the module returned an error: " + ce.Err.Error()
		}
	case wasm.KindExit:
		return fmt.Sprintf("exit: exited with code %d (details in the API server's log)", ce.ExitCode)
	}
	return string(ce.Kind) + " (details in the API server's log)"
}

// Denial is the error a client sees when a module rejects its request: a *StatusError with the
// module's status, its code (403 unless it named one of at least 400) and the message
// DenialMessage builds.
func Denial(module string, result *metav1.Status) *apierrors.StatusError {
	status := metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden}
	if result != nil {
		status.Details = result.Details
		if result.Code >= http.StatusBadRequest {
			status.Code, status.Reason = result.Code, result.Reason
			if status.Reason == "" {
				status.Reason = reasonFor(result.Code)
			}
		}
	}
	status.Message = DenialMessage(module, result)
	return &apierrors.StatusError{ErrStatus: status}
}

// DenialMessage is the message a client sees when the module rejects a request.
func DenialMessage(module string, status *metav1.Status) string {
	return fmt.Sprintf("admission WASM module %q denied the request: %s", module, denialWhy(status))
}

// denialWhy is why a module denied: its status's message, or its reason.
func denialWhy(status *metav1.Status) string {
	switch {
	case status != nil && status.Message != "":
		return status.Message
	case status != nil && status.Reason != "":
		return string(status.Reason)
	}
	return "without explanation"
}

// reasonFor names the reason of a status code a module sent without one, so clients can tell
// (kubectl prints "Error from server (Forbidden)").
func reasonFor(code int32) metav1.StatusReason {
	switch code {
	case http.StatusBadRequest:
		return metav1.StatusReasonBadRequest
	case http.StatusUnauthorized:
		return metav1.StatusReasonUnauthorized
	case http.StatusForbidden:
		return metav1.StatusReasonForbidden
	case http.StatusNotFound:
		return metav1.StatusReasonNotFound
	case http.StatusConflict:
		return metav1.StatusReasonConflict
	case http.StatusUnprocessableEntity:
		return metav1.StatusReasonInvalid
	case http.StatusTooManyRequests:
		return metav1.StatusReasonTooManyRequests
	case http.StatusInternalServerError:
		return metav1.StatusReasonInternalError
	case http.StatusServiceUnavailable:
		return metav1.StatusReasonServiceUnavailable
	case http.StatusGatewayTimeout:
		return metav1.StatusReasonTimeout
	}
	return metav1.StatusReasonUnknown
}
