package hook

import (
	"bytes"
	"context"
	stdjson "encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
)

// maxCopyBytes is what the API server sets jsonpatch.AccumulatedCopySizeLimit to
// (k8s.io/apiserver/pkg/server.Config.JSONPatchMaxCopyBytes, 3 MiB) when it starts; the
// admission plugin runs inside it, so patches are applied under that limit.
const maxCopyBytes = 3 << 20

// FuzzApplyPatch: any patch a mutating module's answer gets past envelope.CheckAdmission (a
// JSONPatch or a Full patch), applied by the admission plugin to a ConfigMap or to a custom
// resource (unstructured), never panics; a JSONPatch that decodeJSONPatch refuses, or a Full
// patch that is not JSON, is an invalid-response error of the module (CheckPatch says so too); a
// JSONPatch that decodeJSONPatch accepts, applied with json-patch as the plugin applies it, gives
// an error or valid JSON no larger than the object and patch allow; on error the object is left
// as it was; on success the object is still of its kind and is exactly what the patched document
// decodes to, and it is marked changed exactly when it changed.
func FuzzApplyPatch(f *testing.F) {
	jsonpatch.AccumulatedCopySizeLimit = maxCopyBytes
	mod := loadModule(f, "magic-mutate")
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		f.Fatal(err)
	}
	o := admission.NewObjectInterfacesFromScheme(scheme)
	serializer := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{})
	cm := []byte(`{"metadata":{"name":"a","namespace":"ns","labels":{"x":"1"}},"data":{"k":"v","l":"w"}}`)
	f.Add(cm, []byte(`[{"op":"add","path":"/metadata/labels/y","value":"2"},{"op":"remove","path":"/data/k"}]`), false, false)
	f.Add(cm, []byte(`[{"op":"copy","from":"/data","path":"/binaryData"}]`), false, false)
	f.Add(cm, []byte(`[{"op":"replace","path":"/kind","value":"Secret"}]`), false, true)
	f.Add(cm, []byte(`[{"op":"move","from":"/data","path":"/data/x"}]`), false, true)
	f.Add(cm, []byte(`[{"op":"test","path":"/data/k","value":"v"},{"op":"add","path":"/spec","value":{"a":[1,2]}}]`), false, true)
	f.Add(cm, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"}}`), true, false)
	f.Add(cm, []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"b"}}`), true, true)
	f.Fuzz(func(t *testing.T, object, patch []byte, full, custom bool) {
		obj, gvk, gvr := fuzzObject(object, custom)
		attr := admission.NewAttributesRecord(obj, nil, gvk, "ns", "a", gvr, "", admission.Create,
			&metav1.CreateOptions{}, false, &user.DefaultInfo{Name: "fuzz"})
		va, err := admission.NewVersionedAttributes(attr, gvk, o)
		if err != nil {
			t.Fatal(err)
		}
		res := accepted(t, mod, patch, full)
		if res == nil {
			return
		}
		before := va.VersionedObject.Object().DeepCopyObject()
		current, err := runtime.Encode(serializer, before)
		if err != nil {
			t.Fatal(err)
		}
		patched, applyErr := patch, error(nil)
		var refused error // decodePatch's
		if full && !isJSONObject(patch) {
			refused = errors.New("a Full patch that is not a JSON object")
		}
		if !full {
			p, err := decodeJSONPatch(patch)
			refused, applyErr = err, err
			if err != nil {
				if ops, err := jsonpatch.DecodePatch(patch); err == nil && wellFormed(ops) {
					t.Fatalf("decodeJSONPatch refused %q (%v), a well-formed RFC 6902 patch", patch, refused)
				}
			} else if !wellFormed(p) {
				t.Fatalf("decodeJSONPatch accepted %q, whose operations are not all RFC 6902's with their members", patch)
			} else if patched, applyErr = p.Apply(current); applyErr == nil {
				if !stdjson.Valid(patched) {
					t.Fatalf("json-patch made invalid JSON %q of %q with %q", patched, current, patch)
				}
				// Marshalling may escape a byte as \u00XX: at most 6 bytes for each byte of
				// object and patch, plus what copies may add.
				if limit := 6*(len(current)+len(patch)) + maxCopyBytes; len(patched) > limit {
					t.Fatalf("patch of %d bytes grew a %d-byte object to %d bytes", len(patch), len(current), len(patched))
				}
			}
		}
		am := AdmissionModule{Admitter: Envelope(Module{Module: mod}), Mutating: true}
		decoded, err := decodePatch(am, res)
		if (err != nil) != (refused != nil) {
			t.Fatalf("%q (full %v): decodePatch says %v, the fuzzer's rules say %v", patch, full, err, refused)
		}
		if err == nil {
			err = applyPatch(va, decoded, o)
		}
		after := va.VersionedObject.Object()
		if err != nil {
			if !apiequality.Semantic.DeepEqual(before, after) || va.Dirty {
				t.Fatalf("a failed patch (%v) changed the object:\n%#v\n%#v", err, before, after)
			}
			var ce *wasm.CallError
			if refused != nil && (!errors.As(err, &ce) || ce.Kind != wasm.KindInvalidResponse || ce.Module != mod.Name() || ce.Export != envelope.ExportValidate) {
				t.Fatalf("%q refused (%v): %v, want an invalid-response error of the module", patch, refused, err)
			}
			return
		}
		if refused != nil {
			t.Fatalf("%q was refused (%v), yet the plugin applied it", patch, refused)
		}
		if full && !isJSONObject(patch) {
			t.Fatalf("the Full patch %q is not a JSON object, yet the plugin applied it", patch)
		}
		if applyErr != nil {
			t.Fatalf("%q does not apply to %q (%v), yet the plugin applied it", patch, current, applyErr)
		}
		if _, typed := after.(*corev1.ConfigMap); typed == custom {
			t.Fatalf("the object became a %T", after)
		}
		if custom && after.GetObjectKind().GroupVersionKind() != gvk {
			t.Fatalf("the object became a %v, was a %v", after.GetObjectKind().GroupVersionKind(), gvk)
		}
		want := fresh(before)
		if _, _, err := serializer.Decode(patched, &gvk, want); err != nil {
			t.Fatalf("the patch applied, yet the patched document %q does not decode: %v", patched, err)
		}
		changed := !apiequality.Semantic.DeepEqual(before, want)
		if changed != va.Dirty {
			t.Fatalf("patched %q with %q: the document changed: %v, the object is marked changed: %v", current, patch, changed, va.Dirty)
		}
		if !changed {
			want = before
		}
		if !apiequality.Semantic.DeepEqual(after, want) {
			t.Fatalf("patched %q with %q: got %#v, the patched document says %#v", current, patch, after, want)
		}
	})
}

// loadModule loads a built-in example module.
func loadModule(f *testing.F, name string) *wasm.Module {
	bin, ok := examples.Module(name)
	if !ok {
		f.Fatalf("no builtin %s", name)
	}
	rt, err := wasm.NewRuntime(context.Background(), wasm.RuntimeConfig{CacheDir: filepath.Join(os.TempDir(), "wasmkube-test-cache")})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { rt.Close(context.Background()) })
	m, err := rt.Load(context.Background(), bin, wasm.ModuleConfig{Name: name, PoolSize: 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { m.Close(context.Background()) })
	return m
}

// accepted is the module's answer carrying patch, as envelope.CheckAdmission returns it, or nil
// when CheckAdmission refuses it (the plugin never applies such a patch).
func accepted(t *testing.T, m *wasm.Module, patch []byte, full bool) *admissionv1.AdmissionResponse {
	pt := admissionv1.PatchTypeJSONPatch
	if full {
		pt = envelope.PatchTypeFull
	}
	out := &admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: &admissionv1.AdmissionResponse{UID: "u", Allowed: true, Patch: bytes.Clone(patch), PatchType: &pt},
	}
	res, err := envelope.CheckAdmission(m, &admissionv1.AdmissionRequest{UID: "u"}, out, true)
	if err != nil || len(res.Patch) == 0 {
		return nil
	}
	if !bytes.Equal(res.Patch, patch) || res.PatchType == nil || *res.PatchType != pt {
		t.Fatalf("CheckAdmission changed the patch: %q %v", res.Patch, res.PatchType)
	}
	return res
}

// wellFormed reports whether every operation of p is one RFC 6902 defines, with the members it
// requires (the reference decodeJSONPatch is held to).
func wellFormed(p jsonpatch.Patch) bool {
	need := map[string][]string{"add": {"value"}, "replace": {"value"}, "test": {"value"}, "move": {"from"}, "copy": {"from"}, "remove": nil}
	for _, op := range p {
		members, known := need[op.Kind()]
		if !known {
			return false
		}
		for _, m := range append(members, "path") {
			if _, ok := op[m]; !ok {
				return false
			}
		}
	}
	return true
}

// fuzzObject is the object a request carries: a ConfigMap, or a custom resource, read from
// object (a fixed one when it does not decode).
func fuzzObject(object []byte, custom bool) (runtime.Object, schema.GroupVersionKind, schema.GroupVersionResource) {
	if custom {
		gvk := schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Widget"}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(object); err != nil || u.GroupVersionKind() != gvk {
			u = &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"size": int64(1)}}}
		}
		u.SetGroupVersionKind(gvk)
		return u, gvk, schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	}
	gvk := corev1.SchemeGroupVersion.WithKind("ConfigMap")
	cm := &corev1.ConfigMap{}
	if err := stdjson.Unmarshal(object, cm); err != nil {
		cm = &corev1.ConfigMap{Data: map[string]string{"k": "v"}}
	}
	cm.SetGroupVersionKind(gvk)
	return cm, gvk, corev1.SchemeGroupVersion.WithResource("configmaps")
}

// fresh is an empty object of obj's type to decode into.
func fresh(obj runtime.Object) runtime.Object {
	if _, ok := obj.(*unstructured.Unstructured); ok {
		return &unstructured.Unstructured{}
	}
	return &corev1.ConfigMap{}
}

// TestApplyPatchSurvivesJSONPatchPanics: JSONPatches that make json-patch panic are refused
// by decodeJSONPatch as an invalid answer of the module, before json-patch sees them; and should
// one get past it, applyJSONPatch turns the panic into an error of the module, not a panic in the
// API server.
func TestApplyPatchSurvivesJSONPatchPanics(t *testing.T) {
	va, o := testAttributes(t), configMapInterfaces(t)
	jsonPatch := admissionv1.PatchTypeJSONPatch
	for _, patch := range []string{`[{"op":"replace","path":""}]`, `[{"op":"test","path":""}]`} {
		res := &admissionv1.AdmissionResponse{Allowed: true, Patch: []byte(patch), PatchType: &jsonPatch}
		d := DecideAdmission(AdmissionModule{Admitter: &fakeAdmitter{name: "m"}, Mutating: true}, res, nil)
		err := d.Failure
		if d.Patch != nil {
			err = applyPatch(va, d.Patch, o)
		}
		if !wasm.IsKind(err, wasm.KindInvalidResponse) || !strings.Contains(err.Error(), "not an RFC 6902 JSON patch") {
			t.Errorf("%s: %v, want the module's answer refused as invalid", patch, err)
		}
		if va.Dirty {
			t.Errorf("%s: the object was changed", patch)
		}
		ops, err := jsonpatch.DecodePatch([]byte(patch))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := applyJSONPatch(ops, []byte(`{"a":1}`)); err == nil || !strings.Contains(err.Error(), "json-patch panicked") {
			t.Errorf("%s: %v, want an error saying json-patch panicked", patch, err)
		}
	}
}

// configMapInterfaces are the object interfaces of a scheme that knows ConfigMaps.
func configMapInterfaces(t *testing.T) admission.ObjectInterfaces {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return admission.NewObjectInterfacesFromScheme(scheme)
}

// testAttributes are the attributes of a ConfigMap's creation, in version v1.
func testAttributes(t *testing.T) *admission.VersionedAttributes {
	obj, gvk, gvr := fuzzObject(nil, false)
	attr := admission.NewAttributesRecord(obj, nil, gvk, "ns", "a", gvr, "", admission.Create,
		&metav1.CreateOptions{}, false, &user.DefaultInfo{Name: "t"})
	va, err := admission.NewVersionedAttributes(attr, gvk, configMapInterfaces(t))
	if err != nil {
		t.Fatal(err)
	}
	return va
}

// isJSONObject reports whether doc is one JSON object, what a Full patch must be.
func isJSONObject(doc []byte) bool {
	var obj map[string]stdjson.RawMessage
	return stdjson.Unmarshal(doc, &obj) == nil && obj != nil
}
