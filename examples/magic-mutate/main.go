// Command magic-mutate is the original proof of concept's mutating module: it adds
// magic-value: foobar to every ConfigMap's data. It answers with an RFC 6902 JSON patch;
// admission.Mutate (the original's "Full" patch, the whole object) works too.
package main

import (
	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/admission"
)

func main() {}

func init() { admission.Handle(guest.NoSettings, mutate) }

func mutate(r *admission.Request, _ struct{}) admission.Response {
	if r.Kind.Kind != "ConfigMap" || !r.Object.Exists() {
		return admission.Accept()
	}
	if !r.Object.Get("data").IsObject() {
		return admission.Patch(admission.Operation{Op: "add", Path: "/data", Value: []byte(`{"magic-value":"foobar"}`)})
	}
	return admission.Patch(admission.Operation{Op: "add", Path: "/data/magic-value", Value: []byte(`"foobar"`)})
}
