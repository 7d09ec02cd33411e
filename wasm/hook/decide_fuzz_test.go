package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
)

// The decision fuzz targets feed what a module could write to stdout through the decisions the
// API server makes of it (DecideAuthn, DecideAuthz, decodeJSONPatch), without running a module:
// a module can write any bytes, so any bytes are the input. The envelope's own decoding is
// package envelope's (FuzzDecodeEnvelope); here any stdout that holds a response is taken. The
// *wasm.Module the decisions need (for its name in errors) is an empty module.

const fuzzModule = "fuzz"

// answer decodes the response member of the envelope a module wrote to stdout into response;
// ok is false when stdout holds no response (the host fails closed then).
func answer(stdout []byte, response any) (ok bool) {
	var out struct {
		Response json.RawMessage `json:"response"`
		Error    string          `json:"error"`
	}
	if json.Unmarshal(stdout, &out) != nil || out.Error != "" || len(out.Response) == 0 || string(out.Response) == "null" {
		return false
	}
	return json.Unmarshal(out.Response, response) == nil
}

// wantCallError checks that err is a *CallError of module fuzz, export, kind.
func wantCallError(t *testing.T, err error, export string, kind wasm.ErrorKind) {
	t.Helper()
	wasmtest.WantCallError(t, err, fuzzModule, export, kind)
}

// FuzzAuthnAnswer: whatever an authentication module writes, DecideAuthn authenticates only
// with status.authenticated and a username, hands on exactly the module's user with
// system:authenticated added to its groups (once), and grants only audiences that were asked for
// (all of them when the module names none); an error is a CallError of the module and never
// comes with a user.
func FuzzAuthnAnswer(f *testing.F) {
	m := wasmtest.Named(f, fuzzModule)
	f.Add([]byte(`{"response":{"status":{"authenticated":true,"user":{"username":"a","uid":"1","groups":["g"],"extra":{"k":["v"]}},"audiences":["x","z"]}}}`), "x,y")
	f.Add([]byte(`{"response":{"status":{"authenticated":true,"user":{"groups":["system:masters"]}}}}`), "")
	f.Add([]byte(`{"response":{"status":{"authenticated":false,"error":"bad token"}}}`), "api")
	f.Add([]byte(`{"response":{"status":{"authenticated":true,"user":{"username":"a","groups":["system:authenticated","g"]}}}}`), "")
	f.Fuzz(func(t *testing.T, stdout []byte, audiences string) {
		var review authenticationv1.TokenReview
		if !answer(stdout, &review) {
			return
		}
		var aud []string
		if audiences != "" {
			aud = strings.Split(audiences, ",")
		}
		st := review.Status
		resp, ok, err := DecideAuthn(m, &review, aud)
		switch {
		case err != nil:
			if ok || resp != nil {
				t.Fatalf("error %v with ok %v and %+v", err, ok, resp)
			}
			if st.Authenticated {
				wantCallError(t, err, envelope.ExportAuthn, wasm.KindInvalidResponse)
			} else {
				wantCallError(t, err, envelope.ExportAuthn, wasm.KindModuleError)
			}
			return
		case !ok:
			if resp != nil {
				t.Fatalf("not authenticated, yet a response %+v", resp)
			}
			if st.Authenticated && st.User.Username != "" && (len(aud) == 0 || len(st.Audiences) == 0) {
				t.Fatalf("%q: a username and no audience to refuse, yet not authenticated", stdout)
			}
			if !st.Authenticated && st.Error != "" {
				t.Fatalf("%q: the module's error %q was dropped", stdout, st.Error)
			}
			return
		}
		u := resp.User
		groups := st.User.Groups
		if !slices.Contains(groups, user.AllAuthenticated) {
			groups = append(slices.Clone(groups), user.AllAuthenticated)
		}
		switch {
		case !st.Authenticated:
			t.Fatalf("%q: authenticated without status.authenticated", stdout)
		case u == nil || u.GetName() == "":
			t.Fatalf("%q: authenticated without a username: %+v", stdout, u)
		case u.GetName() != st.User.Username || u.GetUID() != st.User.UID || !slices.Equal(u.GetGroups(), groups):
			t.Fatalf("%q: user %+v, the module said %+v (groups with %s: %q)", stdout, u, st.User, user.AllAuthenticated, groups)
		case len(u.GetExtra()) != len(st.User.Extra):
			t.Fatalf("%q: extra %v, the module said %v", stdout, u.GetExtra(), st.User.Extra)
		}
		for k, v := range st.User.Extra {
			if !slices.Equal(u.GetExtra()[k], v) {
				t.Fatalf("%q: extra %v, the module said %v", stdout, u.GetExtra(), st.User.Extra)
			}
		}
		if len(aud) == 0 {
			return
		}
		if len(resp.Audiences) == 0 {
			t.Fatalf("%q: authenticated for none of the audiences %q", stdout, aud)
		}
		for _, a := range resp.Audiences {
			if !slices.Contains(aud, a) || (len(st.Audiences) > 0 && !slices.Contains(st.Audiences, a)) {
				t.Fatalf("%q: granted audience %q; asked %q, the module said %q", stdout, a, aud, st.Audiences)
			}
		}
		if len(st.Audiences) == 0 && !slices.Equal(resp.Audiences, aud) {
			t.Fatalf("%q: the module named no audience: granted %q, want all of %q", stdout, resp.Audiences, aud)
		}
	})
}

// FuzzAuthzAnswer: whatever an authorization module writes, DecideAuthz allows only when
// status.allowed is set and status.denied is not, without an error; status.denied is always a
// Deny; neither is NoOpinion; the reason passes through (a deny in an invalid answer without one
// gets one that names the module); the failure policy changes nothing of an answer. A failed
// call is NoOpinion under failurePolicy NoOpinion and Deny under Deny, with the call's error.
func FuzzAuthzAnswer(f *testing.F) {
	m := wasmtest.Named(f, fuzzModule)
	f.Add([]byte(`{"response":{"status":{"allowed":true,"denied":true,"reason":"both"}}}`))
	f.Add([]byte(`{"response":{"status":{"allowed":true,"denied":true}}}`))
	f.Add([]byte(`{"response":{"status":{"allowed":true,"reason":"yes"}}}`))
	callErr := &wasm.CallError{Module: fuzzModule, Export: envelope.ExportAuthz, Kind: wasm.KindTrap}
	f.Fuzz(func(t *testing.T, stdout []byte) {
		var review authorizationv1.SubjectAccessReview
		if !answer(stdout, &review) {
			return
		}
		st := review.Status
		for _, policy := range []FailurePolicy{NoOpinion, Deny} {
			am := AuthzModule{Module: Module{Module: m}, FailurePolicy: policy}
			d, reason, err := DecideAuthz(am, &review, nil)
			want := st.Reason
			if st.Allowed && st.Denied && want == "" {
				want = fmt.Sprintf("authorization module %q denied the request", fuzzModule)
			}
			if reason != want {
				t.Fatalf("%q (%s): reason %q, want %q", stdout, policy, reason, want)
			}
			switch {
			case st.Allowed && st.Denied:
				if d != authorizer.DecisionDeny {
					t.Fatalf("%q: allowed and denied gave %v, want Deny", stdout, d)
				}
				wantCallError(t, err, envelope.ExportAuthz, wasm.KindInvalidResponse)
			case err != nil:
				t.Fatalf("%q: %v", stdout, err)
			case st.Denied && d != authorizer.DecisionDeny, st.Allowed && d != authorizer.DecisionAllow:
				t.Fatalf("%q: %+v gave %v", stdout, st, d)
			case !st.Allowed && !st.Denied && d != authorizer.DecisionNoOpinion:
				t.Fatalf("%q: neither allowed nor denied gave %v", stdout, d)
			}
			// A failed call: the answer (whatever it holds) is not looked at.
			d, _, err = DecideAuthz(am, &review, callErr)
			wantDecision := map[FailurePolicy]authorizer.Decision{NoOpinion: authorizer.DecisionNoOpinion, Deny: authorizer.DecisionDeny}[policy]
			if d != wantDecision || !errors.Is(err, callErr) {
				t.Fatalf("%q: a failed call under %s gave %v %v, want %v with the call's error", stdout, policy, d, err, wantDecision)
			}
		}
	})
}

// sampleObject is an object to apply accepted patches to.
var sampleObject = []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","labels":{"x":"1"}},"data":{"k":"v"},"list":[1,2]}`)

// FuzzAdmissionPatch: whatever an admission module writes, a JSONPatch in an answer that
// envelope.CheckAdmission accepts is taken by decodeJSONPatch only when it decodes and its
// operations are RFC 6902's with the members each requires; such a patch, applied with
// json-patch as the plugin applies it, does not panic and makes valid JSON. (Full patches are
// decoded where they are applied: FuzzApplyPatch.)
func FuzzAdmissionPatch(f *testing.F) {
	m := wasmtest.Named(f, fuzzModule)
	const review = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":`
	f.Add([]byte(`{"response":`+review+`{"uid":"u1","allowed":true,"patchType":"JSONPatch","patch":"W3sib3AiOiJhZGQiLCJwYXRoIjoiL2EiLCJ2YWx1ZSI6MX1d"}}}`), "u1", true)
	f.Add([]byte(`{"response":`+review+`{"uid":"u1","allowed":true,"patchType":"Full","patch":"e30="}}}`), "u1", false)
	f.Fuzz(func(t *testing.T, stdout []byte, uid string, mutating bool) {
		var out admissionv1.AdmissionReview
		if !answer(stdout, &out) {
			return
		}
		res, err := envelope.CheckAdmission(m, &admissionv1.AdmissionRequest{UID: types.UID(uid)}, &out, mutating)
		if err != nil || len(res.Patch) == 0 || *res.PatchType != admissionv1.PatchTypeJSONPatch {
			return
		}
		patch, err := decodeJSONPatch(res.Patch)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "patch is not an RFC 6902 JSON patch") {
				t.Fatalf("%q: refused with %v", res.Patch, err)
			}
			if ops, err := jsonpatch.DecodePatch(res.Patch); err == nil && wellFormed(ops) {
				t.Fatalf("%q: refused a well-formed RFC 6902 patch", res.Patch)
			}
			return
		}
		if _, err := jsonpatch.DecodePatch(res.Patch); err != nil {
			t.Fatalf("%q: accepted a JSONPatch that does not decode: %v", res.Patch, err)
		}
		if !wellFormed(patch) {
			t.Fatalf("%q: accepted operations that are not RFC 6902's with their members", res.Patch)
		}
		// Applied as the admission plugin applies it (without its recover), it must not panic.
		if patched, err := patch.Apply(sampleObject); err == nil && !json.Valid(patched) {
			t.Fatalf("%q: the patch made invalid JSON %q", res.Patch, patched)
		}
	})
}
