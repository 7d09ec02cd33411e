package kubewarden

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmbin"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
)

// The fuzz targets feed what a policy could answer, and what a module file could hold, through
// the host's decoding without running a policy: any bytes are the input. The *wasm.Module a
// Policy needs (for its name in errors) is an empty module.

const fuzzModule = "fuzz"

// wantCallError checks that err is a *CallError of module fuzz, export, kind.
func wantCallError(t *testing.T, err error, export string, kind wasm.ErrorKind) {
	t.Helper()
	var ce *wasm.CallError
	if !errors.As(err, &ce) || ce.Module != fuzzModule || ce.Export != export || ce.Kind != kind {
		t.Fatalf("error %v (%T), want a %s CallError of module %s export %s", err, err, kind, fuzzModule, export)
	}
}

// FuzzKubewardenAnswer: whatever a Kubewarden policy answers to validate, Admit (its decoding
// step) allows only with "accepted": true; never lets a policy that may not mutate, or a
// DELETE, carry a patch (such a mutation is a denial); and the JSONPatch it makes from
// mutated_object turns the object the policy saw into exactly mutated_object.
func FuzzKubewardenAnswer(f *testing.F) {
	p := &Policy{mod: wasmtest.Named(f, fuzzModule)}
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
			wantCallError(t, err, "validate", wasm.KindInvalidResponse)
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
		case res.PatchType == nil || *res.PatchType != admissionv1.PatchTypeJSONPatch:
			t.Fatalf("%q: patchType %v", out, res.PatchType)
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
	docs, _ := filepath.Glob("../../examples/*/metadata.yml")
	if len(docs) == 0 {
		f.Fatal("no examples/*/metadata.yml to seed with")
	}
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wasmtest.Empty, data)
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
