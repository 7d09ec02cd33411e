package hook

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
)

// fakeAdmitter is an Admitter that answers with a scripted response (res, with the request's
// uid) or error, or with what answer computes, and records every review it gets.
type fakeAdmitter struct {
	name   string
	res    *admissionv1.AdmissionResponse
	err    error
	answer func(*admissionv1.AdmissionReview) (*admissionv1.AdmissionResponse, error)

	mu       sync.Mutex
	reviews  []*admissionv1.AdmissionReview
	mutating []bool
}

func (f *fakeAdmitter) Name() string { return f.name }

func (f *fakeAdmitter) Admit(_ context.Context, review *admissionv1.AdmissionReview, mutating bool) (*admissionv1.AdmissionResponse, error) {
	f.mu.Lock()
	f.reviews = append(f.reviews, review.DeepCopy())
	f.mutating = append(f.mutating, mutating)
	f.mu.Unlock()
	if f.answer != nil {
		return f.answer(review)
	}
	if f.err != nil {
		return nil, f.err
	}
	res := &admissionv1.AdmissionResponse{Allowed: true}
	if f.res != nil {
		res = f.res.DeepCopy()
	}
	res.UID = review.Request.UID
	return res, nil
}

// calls is the number of reviews f got.
func (f *fakeAdmitter) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reviews)
}

// last is the last review f got.
func (f *fakeAdmitter) last(t *testing.T) *admissionv1.AdmissionReview {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reviews) == 0 {
		t.Fatalf("module %q was not called", f.name)
	}
	return f.reviews[len(f.reviews)-1]
}

func patchType(t admissionv1.PatchType) *admissionv1.PatchType { return &t }

// jsonPatch is an allowing answer with a JSON patch.
func jsonPatch(patch string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: []byte(patch), PatchType: patchType(admissionv1.PatchTypeJSONPatch)}
}

// fullPatch is an allowing answer with a Full patch (the whole object).
func fullPatch(object string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: []byte(object), PatchType: patchType(envelope.PatchTypeFull)}
}

func denyWith(status *metav1.Status) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: status}
}

const (
	deniedPrefix   = `admission WASM module "m" denied the request: `
	internalPrefix = `Internal error occurred: admission WASM module "m" failed: `
	invalidAnswer  = "invalid-response (details in the API server's log)"
)

// wantDecision is what a test expects of an AdmissionDecision.
type wantDecision struct {
	code    int32 // 0: not denied
	reason  metav1.StatusReason
	message string

	patch admissionv1.PatchType // "": no patch
	ops   int                   // operations of a JSONPatch

	failure     wasm.ErrorKind // kind of the module's failure; "host": a failure that is no CallError
	failedOpen  bool
	verdict     string
	annotations map[string]string
	warnings    []string
}

func (want wantDecision) check(t *testing.T, d *AdmissionDecision) {
	t.Helper()
	if d.Module != "m" {
		t.Errorf("Module %q", d.Module)
	}
	switch {
	case want.code == 0 && d.Denied != nil:
		t.Errorf("denied: %v", d.Denied)
	case want.code != 0 && d.Denied == nil:
		t.Errorf("not denied, want %d %s %q", want.code, want.reason, want.message)
	case want.code != 0:
		s := d.Denied.ErrStatus
		if s.Code != want.code || s.Reason != want.reason || s.Message != want.message || s.Status != metav1.StatusFailure {
			t.Errorf("denied %d %s %q (%s), want %d %s %q", s.Code, s.Reason, s.Message, s.Status, want.code, want.reason, want.message)
		}
		if strings.Contains(s.Message, "secret") {
			t.Errorf("the client would see %q", s.Message)
		}
	}
	switch {
	case want.patch == "" && d.Patch != nil:
		t.Errorf("patch %s %s", d.Patch.Type, d.Patch.JSON)
	case want.patch != "" && d.Patch == nil:
		t.Errorf("no patch, want %s", want.patch)
	case want.patch != "":
		if d.Patch.Type != want.patch || len(d.Patch.Ops) != want.ops || len(d.Patch.JSON) == 0 {
			t.Errorf("patch %s with %d ops (%s), want %s with %d", d.Patch.Type, len(d.Patch.Ops), d.Patch.JSON, want.patch, want.ops)
		}
	}
	var ce *wasm.CallError
	switch {
	case want.failure == "" && d.Failure != nil:
		t.Errorf("failure %v", d.Failure)
	case want.failure != "" && d.Failure == nil:
		t.Errorf("no failure, want %s", want.failure)
	case want.failure == "host" && errors.As(d.Failure, &ce):
		t.Errorf("failure %v, want the host's own error", d.Failure)
	case want.failure != "" && want.failure != "host" && (!errors.As(d.Failure, &ce) || ce.Kind != want.failure):
		t.Errorf("failure %v, want kind %s", d.Failure, want.failure)
	}
	if d.FailedOpen != want.failedOpen {
		t.Errorf("FailedOpen %v", d.FailedOpen)
	}
	if d.Verdict != want.verdict {
		t.Errorf("Verdict %q, want %q", d.Verdict, want.verdict)
	}
	if !maps.Equal(d.AuditAnnotations, want.annotations) {
		t.Errorf("AuditAnnotations %v, want %v", d.AuditAnnotations, want.annotations)
	}
	if !slices.Equal(d.Warnings, want.warnings) {
		t.Errorf("Warnings %q, want %q", d.Warnings, want.warnings)
	}
	for k, v := range d.AuditAnnotations {
		if strings.Contains(k+v, "secret") {
			t.Errorf("audit annotation %s=%q shows the module's stderr", k, v)
		}
	}
	if strings.Contains(d.Verdict, "secret") {
		t.Errorf("verdict %q shows the module's stderr", d.Verdict)
	}
}

// TestDecideAdmission: what the API server makes of a module's answer or failure.
func TestDecideAdmission(t *testing.T) {
	fail := AdmissionModule{FailurePolicy: admissionregistrationv1.Fail}
	ignore := AdmissionModule{FailurePolicy: admissionregistrationv1.Ignore}
	monitor := AdmissionModule{Monitor: true}
	override := AdmissionModule{Message: "the platform team says no"}
	trap := &wasm.CallError{Module: "m", Export: "validate", Kind: wasm.KindTrap, Err: errors.New("wasm error: unreachable"), Stderr: "secret-stderr"}
	timeout := &wasm.CallError{Module: "m", Export: "validate", Kind: wasm.KindTimeout, Stderr: "secret-stderr"}
	moduleError := &wasm.CallError{Module: "m", Export: "validate", Kind: wasm.KindModuleError, Err: errors.New("no config for this namespace")}
	exit := &wasm.CallError{Module: "m", Export: "validate", Kind: wasm.KindExit, ExitCode: 3, Stderr: "secret-stderr"}
	invalidFail := wantDecision{code: 500, reason: metav1.StatusReasonInternalError, message: internalPrefix + invalidAnswer, failure: wasm.KindInvalidResponse}
	invalidIgnore := wantDecision{failure: wasm.KindInvalidResponse, failedOpen: true, annotations: map[string]string{"m/failed-open": invalidAnswer}}

	cases := []struct {
		name       string
		module     AdmissionModule
		validating bool // the module validates; otherwise it mutates
		res        *admissionv1.AdmissionResponse
		err        error
		want       wantDecision
	}{
		// Allow and deny.
		{name: "allow", res: &admissionv1.AdmissionResponse{Allowed: true}},
		{name: "allow, empty patch", res: &admissionv1.AdmissionResponse{Allowed: true, PatchType: patchType(admissionv1.PatchTypeJSONPatch)}},
		{name: "deny without status", res: denyWith(nil),
			want: wantDecision{code: 403, reason: metav1.StatusReasonForbidden, message: deniedPrefix + "without explanation"}},
		{name: "deny with a message", res: denyWith(&metav1.Status{Message: "no latest tags"}),
			want: wantDecision{code: 403, reason: metav1.StatusReasonForbidden, message: deniedPrefix + "no latest tags"}},
		{name: "deny with code 200", res: denyWith(&metav1.Status{Code: 200, Message: "no"}),
			want: wantDecision{code: 403, reason: metav1.StatusReasonForbidden, message: deniedPrefix + "no"}},
		{name: "deny with code 399 and a reason", res: denyWith(&metav1.Status{Code: 399, Reason: metav1.StatusReasonConflict}),
			want: wantDecision{code: 403, reason: metav1.StatusReasonForbidden, message: deniedPrefix + "Conflict"}},
		{name: "deny with a reason only", res: denyWith(&metav1.Status{Reason: metav1.StatusReasonInvalid}),
			want: wantDecision{code: 403, reason: metav1.StatusReasonForbidden, message: deniedPrefix + "Invalid"}},
		{name: "deny with code 400", res: denyWith(&metav1.Status{Code: 400, Message: "bad"}),
			want: wantDecision{code: 400, reason: metav1.StatusReasonBadRequest, message: deniedPrefix + "bad"}},
		{name: "deny with code 404", res: denyWith(&metav1.Status{Code: 404, Message: "gone"}),
			want: wantDecision{code: 404, reason: metav1.StatusReasonNotFound, message: deniedPrefix + "gone"}},
		{name: "deny with code 409 and its own reason", res: denyWith(&metav1.Status{Code: 409, Reason: metav1.StatusReasonAlreadyExists, Message: "taken"}),
			want: wantDecision{code: 409, reason: metav1.StatusReasonAlreadyExists, message: deniedPrefix + "taken"}},
		{name: "deny with code 422", res: denyWith(&metav1.Status{Code: 422, Message: "bad field"}),
			want: wantDecision{code: 422, reason: metav1.StatusReasonInvalid, message: deniedPrefix + "bad field"}},
		{name: "deny with code 429", res: denyWith(&metav1.Status{Code: 429, Message: "slow down"}),
			want: wantDecision{code: 429, reason: metav1.StatusReasonTooManyRequests, message: deniedPrefix + "slow down"}},
		{name: "deny with code 418", res: denyWith(&metav1.Status{Code: 418, Message: "tea"}),
			want: wantDecision{code: 418, reason: metav1.StatusReasonUnknown, message: deniedPrefix + "tea"}},
		{name: "deny with code 503", res: denyWith(&metav1.Status{Code: 503, Message: "later"}),
			want: wantDecision{code: 503, reason: metav1.StatusReasonServiceUnavailable, message: deniedPrefix + "later"}},

		// Message overrides the module's message, keeps its code and reason.
		{name: "message override, no status", module: override, res: denyWith(nil),
			want: wantDecision{code: 403, reason: metav1.StatusReasonForbidden, message: deniedPrefix + "the platform team says no"}},
		{name: "message override keeps code and reason", module: override, res: denyWith(&metav1.Status{Code: 409, Reason: metav1.StatusReasonAlreadyExists, Message: "taken"}),
			want: wantDecision{code: 409, reason: metav1.StatusReasonAlreadyExists, message: deniedPrefix + "the platform team says no"}},
		{name: "message override keeps code", module: override, res: denyWith(&metav1.Status{Code: 422, Message: "bad field"}),
			want: wantDecision{code: 422, reason: metav1.StatusReasonInvalid, message: deniedPrefix + "the platform team says no"}},
		{name: "message override, code below 400", module: override, res: denyWith(&metav1.Status{Code: 200, Message: "no"}),
			want: wantDecision{code: 403, reason: metav1.StatusReasonForbidden, message: deniedPrefix + "the platform team says no"}},
		{name: "message override on allow", module: override, res: &admissionv1.AdmissionResponse{Allowed: true}},

		// JSON patches.
		{name: "JSONPatch", res: jsonPatch(`[{"op":"add","path":"/metadata/labels/a","value":"b"},{"op":"remove","path":"/data/x"}]`),
			want: wantDecision{patch: admissionv1.PatchTypeJSONPatch, ops: 2}},
		{name: "JSONPatch, every op", res: jsonPatch(`[{"op":"add","path":"/a","value":1},{"op":"remove","path":"/a"},{"op":"replace","path":"/b","value":null},{"op":"move","from":"/b","path":"/c"},{"op":"copy","from":"/c","path":"/d"},{"op":"test","path":"/d","value":null}]`),
			want: wantDecision{patch: admissionv1.PatchTypeJSONPatch, ops: 6}},
		{name: "JSONPatch, empty list", res: jsonPatch(`[]`), want: wantDecision{patch: admissionv1.PatchTypeJSONPatch}},
		{name: "JSONPatch, not JSON", res: jsonPatch(`[{"op":`), want: invalidFail},
		{name: "JSONPatch, an object", res: jsonPatch(`{"op":"add","path":"/a","value":1}`), want: invalidFail},
		{name: "JSONPatch, add without value", res: jsonPatch(`[{"op":"add","path":"/a"}]`), want: invalidFail},
		{name: "JSONPatch, replace without value", res: jsonPatch(`[{"op":"replace","path":""}]`), want: invalidFail},
		{name: "JSONPatch, test without value", res: jsonPatch(`[{"op":"test","path":"/a"}]`), want: invalidFail},
		{name: "JSONPatch, remove without path", res: jsonPatch(`[{"op":"remove"}]`), want: invalidFail},
		{name: "JSONPatch, move without from", res: jsonPatch(`[{"op":"move","path":"/a"}]`), want: invalidFail},
		{name: "JSONPatch, copy without from", res: jsonPatch(`[{"op":"copy","path":"/a"}]`), want: invalidFail},
		{name: "JSONPatch, unknown op", res: jsonPatch(`[{"op":"merge","path":"/a","value":1}]`), want: invalidFail},
		{name: "JSONPatch, no op", res: jsonPatch(`[{"path":"/a","value":1}]`), want: invalidFail},
		{name: "JSONPatch, second op broken", res: jsonPatch(`[{"op":"add","path":"/a","value":1},{"op":"add","path":"/b"}]`), want: invalidFail},
		{name: "patch without patchType", res: &admissionv1.AdmissionResponse{Allowed: true, Patch: []byte(`[]`)}, want: invalidFail},
		{name: "unknown patchType", res: &admissionv1.AdmissionResponse{Allowed: true, Patch: []byte(`{}`), PatchType: patchType("MergePatch")}, want: invalidFail},
		{name: "JSONPatch invalid, fail explicitly", module: fail, res: jsonPatch(`[{"op":"add","path":"/a"}]`), want: invalidFail},
		{name: "JSONPatch invalid, ignore", module: ignore, res: jsonPatch(`[{"op":"add","path":"/a"}]`), want: invalidIgnore},
		{name: "JSONPatch not JSON, ignore", module: ignore, res: jsonPatch(`nope`), want: invalidIgnore},
		{name: "unknown op, ignore", module: ignore, res: jsonPatch(`[{"op":"merge","path":"/a","value":1}]`), want: invalidIgnore},
		{name: "no patchType, ignore", module: ignore, res: &admissionv1.AdmissionResponse{Allowed: true, Patch: []byte(`[]`)}, want: invalidIgnore},
		{name: "unknown patchType, ignore", module: ignore, res: &admissionv1.AdmissionResponse{Allowed: true, Patch: []byte(`{}`), PatchType: patchType("MergePatch")}, want: invalidIgnore},
		{name: "broken patch with warnings and annotations, ignore", module: ignore,
			res:  &admissionv1.AdmissionResponse{Allowed: true, Patch: []byte(`[`), PatchType: patchType(admissionv1.PatchTypeJSONPatch), Warnings: []string{"w"}, AuditAnnotations: map[string]string{"k": "v"}},
			want: invalidIgnore},

		// Full patches.
		{name: "Full patch", res: fullPatch(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}`), want: wantDecision{patch: envelope.PatchTypeFull}},
		{name: "Full patch, empty object", res: fullPatch(`{}`), want: wantDecision{patch: envelope.PatchTypeFull}},
		{name: "Full patch, a list", res: fullPatch(`[{"op":"add","path":"/a","value":1}]`), want: invalidFail},
		{name: "Full patch, a string", res: fullPatch(`"x"`), want: invalidFail},
		{name: "Full patch, null", res: fullPatch(`null`), want: invalidFail},
		{name: "Full patch, not JSON", res: fullPatch(`{"a":`), want: invalidFail},
		{name: "Full patch, a list, ignore", module: ignore, res: fullPatch(`[]`), want: invalidIgnore},

		// A validating module may not patch.
		{name: "validating, JSONPatch", validating: true, res: jsonPatch(`[{"op":"add","path":"/a","value":1}]`), want: invalidFail},
		{name: "validating, Full patch", validating: true, res: fullPatch(`{"a":1}`), want: invalidFail},
		{name: "validating, patch, ignore", validating: true, module: ignore, res: jsonPatch(`[]`), want: invalidIgnore},
		{name: "validating, patch, monitor", validating: true, module: monitor, res: jsonPatch(`[]`),
			want: wantDecision{failure: wasm.KindInvalidResponse, verdict: "failed: " + invalidAnswer, annotations: map[string]string{"m/monitor": "failed: " + invalidAnswer}}},
		{name: "validating, empty patch", validating: true, res: &admissionv1.AdmissionResponse{Allowed: true, PatchType: patchType(admissionv1.PatchTypeJSONPatch)}},
		{name: "validating, deny with a patch", validating: true, res: &admissionv1.AdmissionResponse{Patch: []byte(`[]`), PatchType: patchType(admissionv1.PatchTypeJSONPatch)},
			want: wantDecision{code: 403, reason: metav1.StatusReasonForbidden, message: deniedPrefix + "without explanation"}},
		{name: "validating, allow", validating: true, res: &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{"w"}}, want: wantDecision{warnings: []string{"w"}}},

		// A patch in a denying answer is dropped, not even decoded.
		{name: "deny with a patch", res: &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Message: "no"}, Patch: []byte(`[{"op":"add","path":"/a","value":1}]`), PatchType: patchType(admissionv1.PatchTypeJSONPatch)},
			want: wantDecision{code: 403, reason: metav1.StatusReasonForbidden, message: deniedPrefix + "no"}},
		{name: "deny with a broken patch", res: &admissionv1.AdmissionResponse{Allowed: false, Patch: []byte(`[`)},
			want: wantDecision{code: 403, reason: metav1.StatusReasonForbidden, message: deniedPrefix + "without explanation"}},

		// Warnings and audit annotations.
		{name: "warnings", res: &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{"image has no digest", "deprecated label"}},
			want: wantDecision{warnings: []string{"image has no digest", "deprecated label"}}},
		{name: "audit annotations", res: &admissionv1.AdmissionResponse{Allowed: true, AuditAnnotations: map[string]string{"checked": "yes", "rule": "r1"}},
			want: wantDecision{annotations: map[string]string{"m/checked": "yes", "m/rule": "r1"}}},
		{name: "warnings and annotations with a patch", res: &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{"w"}, AuditAnnotations: map[string]string{"k": "v"}, Patch: []byte(`[]`), PatchType: patchType(admissionv1.PatchTypeJSONPatch)},
			want: wantDecision{patch: admissionv1.PatchTypeJSONPatch, warnings: []string{"w"}, annotations: map[string]string{"m/k": "v"}}},
		{name: "warnings and annotations with a denial", res: &admissionv1.AdmissionResponse{Allowed: false, Warnings: []string{"w"}, AuditAnnotations: map[string]string{"k": "v"}},
			want: wantDecision{code: 403, reason: metav1.StatusReasonForbidden, message: deniedPrefix + "without explanation", warnings: []string{"w"}, annotations: map[string]string{"m/k": "v"}}},

		// Call errors: the client learns the kind, never the stderr.
		{name: "trap", err: trap,
			want: wantDecision{code: 500, reason: metav1.StatusReasonInternalError, message: internalPrefix + "trap (details in the API server's log)", failure: wasm.KindTrap}},
		{name: "timeout", err: timeout,
			want: wantDecision{code: 500, reason: metav1.StatusReasonInternalError, message: internalPrefix + "timeout (details in the API server's log)", failure: wasm.KindTimeout}},
		{name: "wrapped timeout", err: fmt.Errorf("call: %w", timeout),
			want: wantDecision{code: 500, reason: metav1.StatusReasonInternalError, message: internalPrefix + "timeout (details in the API server's log)", failure: wasm.KindTimeout}},
		{name: "exit", err: exit,
			want: wantDecision{code: 500, reason: metav1.StatusReasonInternalError, message: internalPrefix + "exit: exited with code 3 (details in the API server's log)", failure: wasm.KindExit}},
		{name: "module error", err: moduleError,
			want: wantDecision{code: 500, reason: metav1.StatusReasonInternalError, message: internalPrefix + "the module returned an error: no config for this namespace", failure: wasm.KindModuleError}},
		{name: "host error", err: errors.New("context canceled"),
			want: wantDecision{code: 500, reason: metav1.StatusReasonInternalError, message: internalPrefix + "context canceled", failure: "host"}},
		{name: "trap, explicit Fail", module: fail, err: trap,
			want: wantDecision{code: 500, reason: metav1.StatusReasonInternalError, message: internalPrefix + "trap (details in the API server's log)", failure: wasm.KindTrap}},
		{name: "trap, ignore", module: ignore, err: trap,
			want: wantDecision{failure: wasm.KindTrap, failedOpen: true, annotations: map[string]string{"m/failed-open": "trap (details in the API server's log)"}}},
		{name: "timeout, ignore", module: ignore, err: timeout,
			want: wantDecision{failure: wasm.KindTimeout, failedOpen: true, annotations: map[string]string{"m/failed-open": "timeout (details in the API server's log)"}}},
		{name: "module error, ignore", module: ignore, err: moduleError,
			want: wantDecision{failure: wasm.KindModuleError, failedOpen: true, annotations: map[string]string{"m/failed-open": "the module returned an error: no config for this namespace"}}},
		{name: "trap, message override", module: override, err: trap,
			want: wantDecision{code: 500, reason: metav1.StatusReasonInternalError, message: internalPrefix + "trap (details in the API server's log)", failure: wasm.KindTrap}},

		// Monitor mode: always allowed, the verdict in MODULE/monitor, no patch.
		{name: "monitor, would allow", module: monitor, res: &admissionv1.AdmissionResponse{Allowed: true},
			want: wantDecision{verdict: "would allow", annotations: map[string]string{"m/monitor": "would allow"}}},
		{name: "monitor, would deny", module: monitor, res: denyWith(&metav1.Status{Code: 422, Message: "bad field"}),
			want: wantDecision{verdict: "would deny: " + deniedPrefix + "bad field", annotations: map[string]string{"m/monitor": "would deny: " + deniedPrefix + "bad field"}}},
		{name: "monitor, would deny without status", module: monitor, res: denyWith(nil),
			want: wantDecision{verdict: "would deny: " + deniedPrefix + "without explanation", annotations: map[string]string{"m/monitor": "would deny: " + deniedPrefix + "without explanation"}}},
		{name: "monitor, would mutate (JSONPatch)", module: monitor, res: jsonPatch(`[{"op":"add","path":"/a","value":1}]`),
			want: wantDecision{verdict: "would mutate", annotations: map[string]string{"m/monitor": "would mutate"}}},
		{name: "monitor, would mutate (Full)", module: monitor, res: fullPatch(`{"a":1}`),
			want: wantDecision{verdict: "would mutate", annotations: map[string]string{"m/monitor": "would mutate"}}},
		{name: "monitor, broken patch", module: monitor, res: jsonPatch(`[{"op":"add","path":"/a"}]`),
			want: wantDecision{failure: wasm.KindInvalidResponse, verdict: "failed: " + invalidAnswer, annotations: map[string]string{"m/monitor": "failed: " + invalidAnswer}}},
		{name: "monitor, trap", module: monitor, err: trap,
			want: wantDecision{failure: wasm.KindTrap, verdict: "failed: trap (details in the API server's log)", annotations: map[string]string{"m/monitor": "failed: trap (details in the API server's log)"}}},
		{name: "monitor, trap, failurePolicy Fail", module: AdmissionModule{Monitor: true, FailurePolicy: admissionregistrationv1.Fail}, err: trap,
			want: wantDecision{failure: wasm.KindTrap, verdict: "failed: trap (details in the API server's log)", annotations: map[string]string{"m/monitor": "failed: trap (details in the API server's log)"}}},
		{name: "monitor, warnings and annotations are not passed on", module: monitor, res: &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{"w"}, AuditAnnotations: map[string]string{"k": "v"}},
			want: wantDecision{verdict: "would allow", annotations: map[string]string{"m/monitor": "would allow"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.module
			m.Admitter, m.Mutating = &fakeAdmitter{name: "m"}, !c.validating
			d := DecideAdmission(m, c.res, c.err)
			c.want.check(t, d)
		})
	}
}

// TestDecideAdmissionFailureKeepsDetails: the log gets what the client does not (the module's
// stderr, the broken answer).
func TestDecideAdmissionFailureKeepsDetails(t *testing.T) {
	m := AdmissionModule{Admitter: &fakeAdmitter{name: "m"}, Mutating: true}
	trap := &wasm.CallError{Module: "m", Kind: wasm.KindTrap, Stderr: "secret-stderr"}
	if d := DecideAdmission(m, nil, trap); !errors.Is(d.Failure, trap) || !strings.Contains(d.Failure.Error(), "secret-stderr") {
		t.Errorf("Failure %v", d.Failure)
	}
	d := DecideAdmission(m, jsonPatch(`[{"op":"frobnicate","path":"/a"}]`), nil)
	if d.Failure == nil || !strings.Contains(d.Failure.Error(), `op "frobnicate"`) {
		t.Errorf("Failure %v", d.Failure)
	}
	if strings.Contains(d.Denied.Error(), "frobnicate") {
		t.Errorf("the client sees the broken answer: %v", d.Denied)
	}
}

// TestDecideAdmissionDetails: a denial keeps the details of the module's status; the code
// stays the module's when it sent one of at least 400.
func TestDecideAdmissionDetails(t *testing.T) {
	m := AdmissionModule{Admitter: &fakeAdmitter{name: "m"}}
	details := &metav1.StatusDetails{Name: "cm", Kind: "configmaps", Causes: []metav1.StatusCause{{Field: "data.x", Message: "too long"}}}
	d := DecideAdmission(m, denyWith(&metav1.Status{Code: http.StatusUnprocessableEntity, Message: "bad", Details: details}), nil)
	if d.Denied == nil || d.Denied.ErrStatus.Details == nil || d.Denied.ErrStatus.Details.Name != "cm" || len(d.Denied.ErrStatus.Details.Causes) != 1 {
		t.Fatalf("denied %+v", d.Denied)
	}
}

// TestAdmissionModuleFailed: a patch that does not apply is decided by the failure policy.
func TestAdmissionModuleFailed(t *testing.T) {
	err := errors.New("apply JSON patch: remove operation does not apply: doc is missing path: /data/x")
	cases := []struct {
		name   string
		module AdmissionModule
		want   wantDecision
	}{
		{"fail (default)", AdmissionModule{},
			wantDecision{code: 500, reason: metav1.StatusReasonInternalError, message: internalPrefix + err.Error(), failure: "host"}},
		{"fail", AdmissionModule{FailurePolicy: admissionregistrationv1.Fail},
			wantDecision{code: 500, reason: metav1.StatusReasonInternalError, message: internalPrefix + err.Error(), failure: "host"}},
		{"ignore", AdmissionModule{FailurePolicy: admissionregistrationv1.Ignore},
			wantDecision{failure: "host", failedOpen: true, annotations: map[string]string{"m/failed-open": err.Error()}}},
		{"monitor", AdmissionModule{Monitor: true},
			wantDecision{failure: "host", verdict: "failed: " + err.Error(), annotations: map[string]string{"m/monitor": "failed: " + err.Error()}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.module
			m.Admitter = &fakeAdmitter{name: "m"}
			c.want.check(t, m.Failed(err))
		})
	}
}

// TestPatchFailedKeepsWarningsAndAnnotations: when a module's patch does not apply, its warnings
// and audit annotations are still recorded, as a webhook's are, beside the failure's.
func TestPatchFailedKeepsWarningsAndAnnotations(t *testing.T) {
	m := AdmissionModule{Admitter: &fakeAdmitter{name: "m"}, Mutating: true, FailurePolicy: admissionregistrationv1.Ignore}
	res := jsonPatch(`[{"op":"remove","path":"/data/x"}]`)
	res.Warnings, res.AuditAnnotations = []string{"careful"}, map[string]string{"checked": "1"}
	d := DecideAdmission(m, res, nil).PatchFailed(m, errors.New("apply JSON patch: doc is missing path: /data/x"))
	if !d.FailedOpen || !slices.Equal(d.Warnings, []string{"careful"}) || d.AuditAnnotations["m/checked"] != "1" || d.AuditAnnotations["m/failed-open"] == "" {
		t.Errorf("decision %+v", d)
	}
}

// TestDecideAdmissionWithoutAnswer: no answer and no error is a failure of the module, never an
// allow (and never a panic).
func TestDecideAdmissionWithoutAnswer(t *testing.T) {
	d := DecideAdmission(AdmissionModule{Admitter: &fakeAdmitter{name: "m"}}, nil, nil)
	if d.Denied == nil || d.Denied.ErrStatus.Code != http.StatusInternalServerError || !wasm.IsKind(d.Failure, wasm.KindMissingResponse) {
		t.Errorf("decision %+v", d)
	}
}
