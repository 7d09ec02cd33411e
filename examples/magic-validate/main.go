// Command magic-validate is the original proof of concept's validating module: it rejects a
// ConfigMap whose data has the key not-allowed-value.
package main

import (
	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/admission"
)

func main() {}

func init() { admission.Handle(guest.NoSettings, validate) }

func validate(r *admission.Request, _ struct{}) admission.Response {
	if r.Kind.Kind == "ConfigMap" && r.Object.Get("data", "not-allowed-value").Exists() {
		return admission.Reject("value 'not-allowed-value' not allowed in configmap", 400)
	}
	return admission.Accept()
}
