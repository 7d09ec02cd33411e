// Package examples embeds the example modules so profiles can name them as builtin:NAME and a
// `go install`ed wasmkube needs no files beside it.
package examples

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

//go:embed */*.wasm
var modules embed.FS

// Module returns the built example module NAME (e.g. "magic-authn").
func Module(name string) ([]byte, bool) {
	b, err := modules.ReadFile(name + "/" + name + ".wasm")
	return b, err == nil
}

// Names lists the embedded modules.
func Names() []string {
	matches, _ := fs.Glob(modules, "*/*.wasm")
	names := make([]string, 0, len(matches))
	for _, m := range matches {
		names = append(names, strings.TrimSuffix(m[strings.IndexByte(m, '/')+1:], ".wasm"))
	}
	sort.Strings(names)
	return names
}
