//go:build !wasip1

package guest

import (
	"embed"
	"io/fs"
)

// source is the SDK's own source, for `wasmkube module new`, which writes it beside a new
// module while the SDK has no published version. Modules (GOOS=wasip1) do not carry it.
//
//go:embed go.mod *.go admission/*.go authn/*.go authz/*.go kubewarden/*.go kubewarden/wapc/*.go kubewarden/wasi/*.go review/*.go stdjson/*.go
var source embed.FS

// Source returns the SDK's source: go.mod and the .go files of its packages, tests included,
// at their paths in the SDK's module. It exists only outside GOOS=wasip1.
func Source() fs.FS { return source }
