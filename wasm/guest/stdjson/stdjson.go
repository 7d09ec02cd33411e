// Package stdjson decodes module settings with encoding/json into any Go type. It is convenient
// and adds about 1 MB to a module (encoding/json, reflect, fmt); guest.JSON's lazy reads
// cost nothing extra.
package stdjson

import (
	"encoding/json"

	"github.com/wasmkube/wasmkube/wasm/guest"
)

// Settings decodes settings into S with encoding/json; absent settings give S's zero value.
func Settings[S any](raw guest.JSON) (S, error) {
	var s S
	if !raw.Exists() {
		return s, nil
	}
	err := json.Unmarshal(raw, &s)
	return s, err
}
