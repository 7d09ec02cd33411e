package wasm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/wasmkube/wasmkube/wasm/internal/wasmbin"
)

// The answer-decoding fuzz targets feed what a module could write to stdout through the
// host's decoding, the steps of CallEnvelope after the call (decodeEnvelope, then the response
// into the review type) and the Decide/Check functions, without running a module: a module can
// write any bytes, so any bytes are the input. The *Module they need (for its name in errors)
// is the real test module.

const fuzzModule = "fuzz"

func fuzzLoad(f *testing.F) *Module {
	return load(f, newRuntime(f), ModuleConfig{Name: fuzzModule, PoolSize: 1})
}

// answer is what CallEnvelope makes of stdout: the response decoded into response, or the
// module's error, or a decoding error (ok false: the host fails closed on all but the first).
func answer(stdout []byte, response any) (ok bool) {
	out, err := decodeEnvelope(stdout)
	if err != nil || out.Error != "" {
		return false
	}
	return json.Unmarshal(out.Response, response) == nil
}

// wantCallError checks that err is a *CallError of module fuzz, export, kind.
func wantCallError(t *testing.T, err error, export string, kind ErrorKind) {
	t.Helper()
	var ce *CallError
	if !errors.As(err, &ce) || ce.Module != fuzzModule || ce.Export != export || ce.Kind != kind {
		t.Fatalf("error %v (%T), want a %s CallError of module %s export %s", err, err, kind, fuzzModule, export)
	}
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
			var ce *CallError
			if out != nil || !errors.As(err, &ce) || (ce.Kind != KindInvalidJSON && ce.Kind != KindMissingResponse) {
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
			wantKind(t, err, KindMissingResponse)
		case err != nil:
			t.Fatalf("%q holds an answer, yet: %v", stdout, err)
		case out.Error != msg || !bytes.Equal(out.Response, resp):
			t.Fatalf("%q decoded to error %q response %q, want %q %q", stdout, out.Error, out.Response, msg, resp)
		}
	})
}

func wantKind(t *testing.T, err error, kind ErrorKind) {
	t.Helper()
	var ce *CallError
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

// FuzzAuthnAnswer: whatever an authentication module writes, DecideAuthn authenticates only
// with status.authenticated and a username, hands on exactly the module's user, and grants
// only audiences that were asked for (all of them when the module names none); an error is a
// CallError of the module and never comes with a user.
func FuzzAuthnAnswer(f *testing.F) {
	m := fuzzLoad(f)
	f.Add([]byte(`{"response":{"status":{"authenticated":true,"user":{"username":"a","uid":"1","groups":["g"],"extra":{"k":["v"]}},"audiences":["x","z"]}}}`), "x,y")
	f.Add([]byte(`{"response":{"status":{"authenticated":true,"user":{"groups":["system:masters"]}}}}`), "")
	f.Add([]byte(`{"response":{"status":{"authenticated":false,"error":"bad token"}}}`), "api")
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
		resp, ok, err := m.DecideAuthn(&review, aud)
		switch {
		case err != nil:
			if ok || resp != nil {
				t.Fatalf("error %v with ok %v and %+v", err, ok, resp)
			}
			if st.Authenticated {
				wantCallError(t, err, ExportAuthn, KindInvalidResponse)
			} else {
				wantCallError(t, err, ExportAuthn, KindModuleError)
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
		switch {
		case !st.Authenticated:
			t.Fatalf("%q: authenticated without status.authenticated", stdout)
		case u == nil || u.GetName() == "":
			t.Fatalf("%q: authenticated without a username: %+v", stdout, u)
		case u.GetName() != st.User.Username || u.GetUID() != st.User.UID || !slices.Equal(u.GetGroups(), st.User.Groups):
			t.Fatalf("%q: user %+v, the module said %+v", stdout, u, st.User)
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
// Deny; neither is NoOpinion; the reason passes through.
func FuzzAuthzAnswer(f *testing.F) {
	m := fuzzLoad(f)
	f.Add([]byte(`{"response":{"status":{"allowed":true,"denied":true,"reason":"both"}}}`))
	f.Add([]byte(`{"response":{"status":{"allowed":true,"reason":"yes"}}}`))
	f.Fuzz(func(t *testing.T, stdout []byte) {
		var review authorizationv1.SubjectAccessReview
		if !answer(stdout, &review) {
			return
		}
		st := review.Status
		d, reason, err := m.DecideAuthz(&review)
		if reason != st.Reason {
			t.Fatalf("%q: reason %q, the module said %q", stdout, reason, st.Reason)
		}
		switch {
		case st.Allowed && st.Denied:
			if d != authorizer.DecisionDeny {
				t.Fatalf("%q: allowed and denied gave %v, want Deny", stdout, d)
			}
			wantCallError(t, err, ExportAuthz, KindInvalidResponse)
		case err != nil:
			t.Fatalf("%q: %v", stdout, err)
		case st.Denied && d != authorizer.DecisionDeny, st.Allowed && d != authorizer.DecisionAllow:
			t.Fatalf("%q: %+v gave %v", stdout, st, d)
		case !st.Allowed && !st.Denied && d != authorizer.DecisionNoOpinion:
			t.Fatalf("%q: neither allowed nor denied gave %v", stdout, d)
		}
	})
}

// FuzzAdmissionAnswer: whatever an admission module writes, CheckAdmission accepts only an
// admission.k8s.io/v1 AdmissionReview whose response echoes the request's uid; a validating
// module's answer never carries a patch; a patch always has a known patchType, a JSONPatch
// decodes (and applies without panicking) and a Full patch is JSON; the decision is the
// module's.
func FuzzAdmissionAnswer(f *testing.F) {
	m := fuzzLoad(f)
	const review = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":`
	f.Add([]byte(`{"response":`+review+`{"uid":"u1","allowed":true,"patchType":"JSONPatch","patch":"W3sib3AiOiJhZGQiLCJwYXRoIjoiL2EiLCJ2YWx1ZSI6MX1d"}}}`), "u1", true)
	f.Add([]byte(`{"response":`+review+`{"uid":"u1","allowed":true,"patchType":"Full","patch":"e30="}}}`), "u1", false)
	f.Add([]byte(`{"response":`+review+`{"uid":"","allowed":false,"status":{"message":"no","code":403},"warnings":["w"]}}}`), "", false)
	f.Fuzz(func(t *testing.T, stdout []byte, uid string, mutating bool) {
		var out admissionv1.AdmissionReview
		if !answer(stdout, &out) {
			return
		}
		req := &admissionv1.AdmissionRequest{UID: types.UID(uid)}
		res, err := m.CheckAdmission(req, &out, mutating)
		if err != nil {
			if res != nil {
				t.Fatalf("error %v with a result %+v", err, res)
			}
			wantCallError(t, err, ExportValidate, KindInvalidResponse)
			return
		}
		r := out.Response
		switch {
		case out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview":
			t.Fatalf("%q: accepted a %s %s", stdout, out.APIVersion, out.Kind)
		case r == nil || r.UID != req.UID:
			t.Fatalf("%q: accepted a response to another request (uid %q)", stdout, uid)
		case res.Allowed != r.Allowed || res.Result != r.Result || !slices.Equal(res.Warnings, r.Warnings):
			t.Fatalf("%q: result %+v is not the module's %+v", stdout, res, r)
		case len(res.Patch) == 0:
			if len(r.Patch) > 0 {
				t.Fatalf("%q: the module's patch was dropped", stdout)
			}
		case !mutating:
			t.Fatalf("%q: a validating module's answer carries a patch", stdout)
		case res.PatchType == admissionv1.PatchTypeJSONPatch:
			patch, err := jsonpatch.DecodePatch(res.Patch)
			if err != nil {
				t.Fatalf("%q: accepted a JSONPatch that does not decode: %v", stdout, err)
			}
			// Applied as the admission plugin applies it, it must not panic.
			if patched, err := patch.Apply(sampleObject); err == nil && !json.Valid(patched) {
				t.Fatalf("%q: the patch made invalid JSON %q", stdout, patched)
			}
		case res.PatchType == PatchTypeFull:
			if !json.Valid(res.Patch) {
				t.Fatalf("%q: accepted a Full patch that is not JSON", stdout)
			}
		default:
			t.Fatalf("%q: accepted patchType %q", stdout, res.PatchType)
		}
	})
}

// sampleObject is an object to apply accepted patches to.
var sampleObject = []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","labels":{"x":"1"}},"data":{"k":"v"},"list":[1,2]}`)

// FuzzKubewardenAnswer: whatever a Kubewarden policy answers to validate, Admit (its decoding
// step) allows only with "accepted": true; never lets a policy that may not mutate, or a
// DELETE, carry a patch (such a mutation is a denial); and the JSONPatch it makes from
// mutated_object turns the object the policy saw into exactly mutated_object.
func FuzzKubewardenAnswer(f *testing.F) {
	p := &Policy{mod: fuzzLoad(f)}
	obj := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","labels":{"x":"1"}},"data":{"k":"v","l":"w"}}`)
	f.Add([]byte(`{"accepted":true,"mutated_object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","labels":{"x":"2","y":"3"}},"data":{"k":"v"}}}`), obj, uint8(0), true)
	f.Add([]byte(`{"accepted":true,"mutated_object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}}`), obj, uint8(2), true)
	f.Add([]byte(`{"accepted":false,"message":"no","code":418,"warnings":["w"],"audit_annotations":{"a":"b"}}`), obj, uint8(1), false)
	f.Add([]byte(`{"accepted":true,"mutated_object":[1,{"a":[]}]}`), []byte(`[1,{"a":[2]}]`), uint8(0), true)
	ops := []admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect}
	f.Fuzz(func(t *testing.T, out, object []byte, op uint8, mutating bool) {
		req := &admissionv1.AdmissionRequest{UID: "u", Operation: ops[int(op)%len(ops)]}
		if json.Valid(object) { // the API server sends an object or none
			req.Object = runtime.RawExtension{Raw: object}
		}
		res, err := p.admissionResult(req, out, mutating)
		var vr struct {
			Accepted      *bool           `json:"accepted"`
			MutatedObject json.RawMessage `json:"mutated_object"`
		}
		decoded := json.Unmarshal(out, &vr) == nil && vr.Accepted != nil
		mutates := len(vr.MutatedObject) > 0 && string(vr.MutatedObject) != "null"
		if err != nil {
			if res != nil {
				t.Fatalf("error %v with a result %+v", err, res)
			}
			wantCallError(t, err, "validate", KindInvalidResponse)
			return
		}
		switch {
		case !decoded:
			t.Fatalf("%q is no ValidationResponse, yet gave %+v", out, res)
		case res.Allowed && !*vr.Accepted:
			t.Fatalf("%q: allowed without accepted: true", out)
		case res.Allowed && mutates && (!mutating || req.Operation == admissionv1.Delete):
			t.Fatalf("%q: a mutation the policy may not make (mutating %v, %s) was allowed", out, mutating, req.Operation)
		case len(res.Patch) == 0:
			return
		case !mutating || req.Operation == admissionv1.Delete || !res.Allowed:
			t.Fatalf("%q: a patch for a policy that may not mutate (%v), operation %s, allowed %v", out, mutating, req.Operation, res.Allowed)
		case res.PatchType != admissionv1.PatchTypeJSONPatch:
			t.Fatalf("%q: patchType %q", out, res.PatchType)
		}
		patch, err := jsonpatch.DecodePatch(res.Patch)
		if err != nil {
			t.Fatalf("%q: the patch %s does not decode: %v", out, res.Patch, err)
		}
		original, err := json.Marshal(&req.Object)
		if err != nil {
			t.Fatal(err)
		}
		patched, err := patch.Apply(original)
		if err != nil {
			t.Fatalf("%q: the patch %s does not apply to %s: %v", out, res.Patch, original, err)
		}
		if !jsonEqual(t, patched, vr.MutatedObject) {
			t.Fatalf("the patch %s turns %s into %s, not the policy's mutated_object %s", res.Patch, original, patched, vr.MutatedObject)
		}
	})
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%q: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return apiequality.Semantic.DeepEqual(va, vb)
}

// FuzzMetadata: ReadMetadata never panics on any bytes and finds metadata exactly when the
// module has the section (a module that does not parse is an error, never metadata); every
// metadata ParseMetadata accepts, written with Annotate into a module that parses, reads back
// equal; Annotate replaces (annotating twice is annotating once) and never makes a module that
// compiles one that does not.
func FuzzMetadata(f *testing.F) {
	docs, _ := filepath.Glob("../examples/*/metadata.yml")
	if len(docs) == 0 {
		f.Fatal("no examples/*/metadata.yml to seed with")
	}
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wasmHeader, data)
	}
	rt := wazero.NewRuntimeWithConfig(f.Context(), wazero.NewRuntimeConfigInterpreter())
	f.Cleanup(func() { _ = rt.Close(context.Background()) })
	f.Fuzz(func(t *testing.T, bin, doc []byte) {
		md, found, err := ReadMetadata(bin)
		raw, hasSection, splitErr := wasmbin.CustomSection(bin, MetadataSection)
		switch {
		case splitErr != nil:
			if err == nil || found || md != nil {
				t.Fatalf("a module that does not parse (%v) gave metadata %+v, found %v, error %v", splitErr, md, found, err)
			}
		case found != hasSection:
			t.Fatalf("found %v, the module has the section: %v", found, hasSection)
		case err != nil:
			if md != nil || json.Valid(raw) && json.Unmarshal(raw, &Metadata{}) == nil {
				t.Fatalf("metadata %q: %v with %+v", raw, err, md)
			}
		case !found:
			if md != nil {
				t.Fatalf("not found, yet metadata %+v", md)
			}
		default:
			var want Metadata
			if json.Unmarshal(raw, &want) != nil || !apiequality.Semantic.DeepEqual(md, &want) {
				t.Fatalf("metadata %q read as %+v", raw, md)
			}
		}

		want, err := ParseMetadata(doc)
		if err != nil {
			return
		}
		annotated, err := Annotate(bin, want)
		if (err != nil) != (splitErr != nil) {
			t.Fatalf("Annotate: %v; the module parses: %v", err, splitErr == nil)
		}
		if err != nil {
			return
		}
		got, found, err := ReadMetadata(annotated)
		if err != nil || !found || !apiequality.Semantic.DeepEqual(got, want) {
			t.Fatalf("wrote %+v, read %+v (found %v, %v)", want, got, found, err)
		}
		twice, err := Annotate(annotated, want)
		if err != nil || !bytes.Equal(twice, annotated) {
			t.Fatalf("annotating twice differs from once (%v)", err)
		}
		if c, err := rt.CompileModule(t.Context(), bin); err == nil {
			_ = c.Close(t.Context())
			c, err := rt.CompileModule(t.Context(), annotated)
			if err != nil {
				t.Fatalf("the module compiles, annotated it does not: %v", err)
			}
			_ = c.Close(t.Context())
		}
	})
}

// wasmHeader is an empty WebAssembly module.
var wasmHeader = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}
