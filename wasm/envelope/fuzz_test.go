package envelope

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
)

// The answer-decoding fuzz targets feed what a module could write to stdout through the
// host's decoding, the steps of Call after the call (decodeEnvelope, then the response into the
// review type) and CheckAdmission, without running a module: a module can write any bytes, so
// any bytes are the input. The *wasm.Module they need (for its name in errors) is an empty
// module. (What the API server decides from the answers is package hook's, fuzzed there.)

const fuzzModule = "fuzz"

// answer is what Call makes of stdout: the response decoded into response, or the module's
// error, or a decoding error (ok false: the host fails closed on all but the first).
func answer(stdout []byte, response any) (ok bool) {
	out, err := decodeEnvelope(stdout)
	if err != nil || out.Error != "" {
		return false
	}
	return json.Unmarshal(out.Response, response) == nil
}

// wantCallError checks that err is a *CallError of module fuzz, export, kind.
func wantCallError(t *testing.T, err error, export string, kind wasm.ErrorKind) {
	t.Helper()
	wasmtest.WantCallError(t, err, fuzzModule, export, kind)
}

// FuzzDecodeEnvelope: decodeEnvelope accepts exactly the stdout that is one JSON object with a
// non-empty "error" string or a non-null "response", and reads those two members as
// encoding/json reads them; anything else is an InvalidJSON or MissingResponse CallError.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte(`{"response":{"status":{"authenticated":true}}}`))
	f.Add([]byte(`{"error":"no","response":null}`))
	f.Fuzz(func(t *testing.T, stdout []byte) {
		out, err := decodeEnvelope(stdout)
		if err != nil {
			var ce *wasm.CallError
			if out != nil || !errors.As(err, &ce) || (ce.Kind != wasm.KindInvalidJSON && ce.Kind != wasm.KindMissingResponse) {
				t.Fatalf("%q: %v (%T) with %+v", stdout, err, err, out)
			}
		}
		if !json.Valid(stdout) {
			if err == nil {
				t.Fatalf("%q is not JSON, yet decoded to %+v", stdout, out)
			}
			return
		}
		var members map[string]json.RawMessage
		if json.Unmarshal(stdout, &members) != nil || members == nil {
			if err == nil {
				t.Fatalf("%q is no JSON object, yet decoded to %+v", stdout, out)
			}
			return
		}
		for k := range members {
			if (strings.EqualFold(k, "error") && k != "error") || (strings.EqualFold(k, "response") && k != "response") {
				return // encoding/json matches field names without case; the reference below does not
			}
		}
		resp, hasResp := members["response"]
		var msg string
		if e, ok := members["error"]; ok && json.Unmarshal(e, &msg) != nil {
			if err == nil {
				t.Fatalf("%q: an error that is not a string, yet decoded to %+v", stdout, out)
			}
			return
		}
		if duplicated(stdout) {
			return // which of two members encoding/json keeps is its business
		}
		switch {
		case msg == "" && (!hasResp || string(resp) == "null"):
			wantKind(t, err, wasm.KindMissingResponse)
		case err != nil:
			t.Fatalf("%q holds an answer, yet: %v", stdout, err)
		case out.Error != msg || !bytes.Equal(out.Response, resp):
			t.Fatalf("%q decoded to error %q response %q, want %q %q", stdout, out.Error, out.Response, msg, resp)
		}
	})
}

func wantKind(t *testing.T, err error, kind wasm.ErrorKind) {
	t.Helper()
	var ce *wasm.CallError
	if !errors.As(err, &ce) || ce.Kind != kind {
		t.Fatalf("error %v, want kind %s", err, kind)
	}
}

// duplicated reports whether the top-level object in doc names a member twice.
func duplicated(doc []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(doc))
	if _, err := dec.Token(); err != nil {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		k, _ := tok.(string)
		if seen[k] {
			return true
		}
		seen[k] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return false
}

// FuzzAdmissionAnswer: whatever an admission module writes, CheckAdmission accepts only an
// admission.k8s.io/v1 AdmissionReview whose response echoes the request's uid; a validating
// module's answer never carries a patch; a patch always has a known patchType (JSONPatch or
// Full), and an answer without a patch has none; the decision is the module's. (A JSONPatch is
// decoded and checked, and a Full patch decoded, where the API server applies it: package
// hook's FuzzAdmissionPatch and FuzzApplyPatch.)
func FuzzAdmissionAnswer(f *testing.F) {
	m := wasmtest.Named(f, fuzzModule)
	const review = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":`
	f.Add([]byte(`{"response":`+review+`{"uid":"u1","allowed":true,"patchType":"JSONPatch","patch":"W3sib3AiOiJhZGQiLCJwYXRoIjoiL2EiLCJ2YWx1ZSI6MX1d"}}}`), "u1", true)
	f.Add([]byte(`{"response":`+review+`{"uid":"u1","allowed":true,"patchType":"Full","patch":"e30="}}}`), "u1", false)
	f.Add([]byte(`{"response":`+review+`{"uid":"","allowed":false,"status":{"message":"no","code":403},"warnings":["w"]}}}`), "", false)
	f.Fuzz(func(t *testing.T, stdout []byte, uid string, mutating bool) {
		var out admissionv1.AdmissionReview
		if !answer(stdout, &out) {
			return
		}
		var said admissionv1.AdmissionResponse // the module's response, as it wrote it
		if out.Response != nil {
			said = *out.Response
		}
		req := &admissionv1.AdmissionRequest{UID: types.UID(uid)}
		res, err := CheckAdmission(m, req, &out, mutating)
		if err != nil {
			if res != nil {
				t.Fatalf("error %v with a result %+v", err, res)
			}
			wantCallError(t, err, ExportValidate, wasm.KindInvalidResponse)
			return
		}
		r := out.Response
		switch {
		case out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview":
			t.Fatalf("%q: accepted a %s %s", stdout, out.APIVersion, out.Kind)
		case r == nil || r.UID != req.UID:
			t.Fatalf("%q: accepted a response to another request (uid %q)", stdout, uid)
		case res.UID != said.UID || res.Allowed != said.Allowed || res.Result != said.Result || !slices.Equal(res.Warnings, said.Warnings) ||
			!maps.Equal(res.AuditAnnotations, said.AuditAnnotations) || !bytes.Equal(res.Patch, said.Patch):
			t.Fatalf("%q: result %+v is not the module's %+v", stdout, res, said)
		case len(res.Patch) == 0:
			if res.PatchType != nil {
				t.Fatalf("%q: no patch, yet patchType %q", stdout, *res.PatchType)
			}
		case !mutating:
			t.Fatalf("%q: a validating module's answer carries a patch", stdout)
		case res.PatchType == nil:
			t.Fatalf("%q: accepted a patch without a patchType", stdout)
		case *res.PatchType != admissionv1.PatchTypeJSONPatch && *res.PatchType != PatchTypeFull:
			t.Fatalf("%q: accepted patchType %q", stdout, *res.PatchType)
		}
	})
}
