package stdjson_test

import (
	"fmt"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/stdjson"
)

// Settings decodes a module's settings into a struct with encoding/json: pass
// stdjson.Settings[T] as the decoder to Handle (about 1 MB more module).
func ExampleSettings() {
	type settings struct {
		RequiredLabels    []string `json:"requiredLabels"`
		AllowedRegistries []string `json:"allowedRegistries"`
	}
	s, err := stdjson.Settings[settings](guest.JSON(`{"requiredLabels":["team"],"allowedRegistries":["ghcr.io/acme/"]}`))
	fmt.Printf("%+v %v\n", s, err)
	none, err := stdjson.Settings[settings](nil)
	fmt.Printf("%+v %v\n", none, err)
	// Output:
	// {RequiredLabels:[team] AllowedRegistries:[ghcr.io/acme/]} <nil>
	// {RequiredLabels:[] AllowedRegistries:[]} <nil>
}
