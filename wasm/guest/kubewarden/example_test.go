package kubewarden_test

import (
	"errors"
	"fmt"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/guest/review"
)

// A Kubewarden policy that requires a label its settings name. A module registers it in init with
// wapc.Register (a waPC guest) or serves it from main with wasi.Run (WASI mode); both hand the
// host's operations to Serve, which is called directly here.
func ExamplePolicy() {
	policy := kubewarden.Policy[string]{
		Settings: func(raw guest.JSON) (string, error) { return raw.Get("requiredLabel").String(), nil },
		ValidateSettings: func(label string) error {
			if label == "" {
				return errors.New("requiredLabel is required")
			}
			return nil
		},
		Validate: func(r *review.Request, label string) kubewarden.Response {
			if !r.Object.Get("metadata", "labels", label).Exists() {
				return kubewarden.Reject(r.Kind.Kind+" "+r.Name+" lacks the label "+label, 0)
			}
			return kubewarden.Accept()
		},
	}

	out, _ := policy.Serve("validate_settings", []byte(`{}`))
	fmt.Println(string(out))
	for _, labels := range []string{`{}`, `{"team":"a"}`} {
		payload := `{"settings":{"requiredLabel":"team"},"request":{"uid":"7e3c","kind":{"version":"v1","kind":"Pod"},` +
			`"name":"web","operation":"CREATE","object":{"metadata":{"name":"web","labels":` + labels + `}}}}`
		out, _ := policy.Serve("validate", []byte(payload))
		fmt.Println(string(out))
	}
	// Output:
	// {"valid":false,"message":"requiredLabel is required"}
	// {"accepted":false,"message":"Pod web lacks the label team"}
	// {"accepted":true}
}
