package hook

import (
	"errors"
	"net/http"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		if err := denial("m", c.result); !errors.As(err, &status) {
			t.Fatalf("%+v: %T", c.result, err)
		}
		if s := status.ErrStatus; s.Code != c.code || s.Reason != c.reason || s.Message != c.message || s.Status != metav1.StatusFailure {
			t.Errorf("%+v: got %d %s %q", c.result, s.Code, s.Reason, s.Message)
		}
	}
}
