package hook

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
)

// TestDenial: the status a client sees when a module rejects its request.
func TestDenial(t *testing.T) {
	cases := []struct {
		result  *metav1.Status
		code    int32
		reason  metav1.StatusReason
		message string
	}{
		{nil, http.StatusForbidden, metav1.StatusReasonForbidden, `admission WASM module "m" denied the request: without explanation`},
		{&metav1.Status{Message: "no"}, http.StatusForbidden, metav1.StatusReasonForbidden, `admission WASM module "m" denied the request: no`},
		{&metav1.Status{Code: 200, Message: "no"}, http.StatusForbidden, metav1.StatusReasonForbidden, `admission WASM module "m" denied the request: no`},
		{&metav1.Status{Code: 400, Reason: "BadRequest"}, 400, metav1.StatusReasonBadRequest, `admission WASM module "m" denied the request: BadRequest`},
		{&metav1.Status{Code: 422, Message: "bad"}, 422, metav1.StatusReasonInvalid, `admission WASM module "m" denied the request: bad`},
		{&metav1.Status{Code: 418, Message: "tea"}, 418, metav1.StatusReasonUnknown, `admission WASM module "m" denied the request: tea`},
	}
	for _, c := range cases {
		var status *apierrors.StatusError
		if err := error(Denial("m", c.result)); !errors.As(err, &status) {
			t.Fatalf("%+v: %T", c.result, err)
		}
		if s := status.ErrStatus; s.Code != c.code || s.Reason != c.reason || s.Message != c.message || s.Status != metav1.StatusFailure {
			t.Errorf("%+v: got %d %s %q", c.result, s.Code, s.Reason, s.Message)
		}
	}
}

// TestFailureMessage: a client learns the kind of a module's failure (and a module's own error
// message), never its stderr or the details of a broken answer.
func TestFailureMessage(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{&wasm.CallError{Module: "m", Kind: wasm.KindTrap, Err: errors.New("wasm error: unreachable"), Stderr: "secret-stderr"}, "trap (details in the API server's log)"},
		{&wasm.CallError{Module: "m", Kind: wasm.KindExit, ExitCode: 3, Stderr: "secret-stderr"}, "exit: exited with code 3 (details in the API server's log)"},
		{&wasm.CallError{Module: "m", Kind: wasm.KindInvalidResponse, Err: errors.New(`got "secret-output"`)}, "invalid-response (details in the API server's log)"},
		{&wasm.CallError{Module: "m", Kind: wasm.KindModuleError, Err: errors.New("the module says no")}, "the module returned an error: the module says no"},
		{fmt.Errorf("wrapped: %w", &wasm.CallError{Kind: wasm.KindTimeout, Stderr: "secret-stderr"}), "timeout (details in the API server's log)"},
		{errors.New("apply JSON patch: bad path"), "apply JSON patch: bad path"},
	}
	for _, c := range cases {
		if got := failureMessage(c.err); got != c.want || strings.Contains(got, "secret") {
			t.Errorf("%v: %q, want %q", c.err, got, c.want)
		}
	}
}

// TestMonitorReportsBrokenPatch: in monitor mode, an answer whose patch enforcing would refuse
// is reported as the failure it would be, not as a mutation.
func TestMonitorReportsBrokenPatch(t *testing.T) {
	var logs bytes.Buffer
	a := &Admission{logger: slog.New(slog.NewTextHandler(&logs, nil))}
	m := AdmissionModule{Admitter: Envelope(Module{Module: wasmtest.Named(t, "watched")}), Mutating: true, Monitor: true}
	jsonPatch := admissionv1.PatchTypeJSONPatch
	for patch, verdict := range map[string]string{
		`[{"op":"add","path":"/data/x","value":"1"}]`: `verdict="would mutate"`,
		`[{"op":"replace","path":""}]`:                `verdict="failed: invalid-response (details in the API server's log)"`,
	} {
		logs.Reset()
		d := DecideAdmission(m, &admissionv1.AdmissionResponse{Allowed: true, Patch: []byte(patch), PatchType: &jsonPatch}, nil)
		a.log(d, testAttributes(t))
		if !strings.Contains(logs.String(), verdict) || d.Denied != nil || d.Patch != nil {
			t.Errorf("%s: want %s in the log and the request let through unpatched:\n%s", patch, verdict, logs.String())
		}
	}
}
