package admission_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/admission"
)

// A validating module: its settings name a forbidden key, ConfigMaps that hold it are rejected,
// the others get a label by JSON patch. A module calls Handle in init; built with GOOS=wasip1,
// the package's "validate" export answers the host's calls with Run(os.Stdin, os.Stdout). Here
// Run answers two calls the way the host makes them: an envelope of settings and AdmissionReview.
func Example() {
	forbidden := func(raw guest.JSON) (string, error) { return raw.Get("forbiddenKey").String(), nil }
	admission.Handle(forbidden, func(r *admission.Request, key string) admission.Response {
		if r.Object.Get("data", key).Exists() {
			return admission.Reject("key '"+key+"' not allowed in configmap", 400)
		}
		return admission.Patch(admission.Operation{Op: "add", Path: "/metadata/labels", Value: []byte(`{"checked":"yes"}`)}).
			WithWarnings(r.Kind.Kind + " " + r.Name + " checked")
	})

	for _, data := range []string{`{"secret":"x"}`, `{"greeting":"hi"}`} {
		envelope := `{"settings":{"forbiddenKey":"secret"},"request":{"apiVersion":"admission.k8s.io/v1",` +
			`"kind":"AdmissionReview","request":{"uid":"7e3c","kind":{"group":"","version":"v1","kind":"ConfigMap"},` +
			`"name":"demo","namespace":"default","operation":"CREATE","object":{"data":` + data + `}}}}`
		admission.Run(strings.NewReader(envelope), os.Stdout)
		fmt.Println()
	}
	// Output:
	// {"response":{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"7e3c","allowed":false,"status":{"message":"key 'secret' not allowed in configmap","code":400}}}}
	// {"response":{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"7e3c","allowed":true,"patch":"W3sib3AiOiJhZGQiLCJwYXRoIjoiL21ldGFkYXRhL2xhYmVscyIsInZhbHVlIjp7ImNoZWNrZWQiOiJ5ZXMifX1d","patchType":"JSONPatch","warnings":["ConfigMap demo checked"]}}}
}
