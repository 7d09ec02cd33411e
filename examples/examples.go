// Package examples embeds the example modules so profiles can name them as builtin:NAME and a
// `go install`ed wasmkube needs no files beside it. The wasmkube command hands them to the library
// as wasmkube.Options.BuiltinModules (FS); the library itself does not import this package.
package examples

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

//go:embed */*.wasm
var modules embed.FS

// FS holds the built example modules as NAME/NAME.wasm (e.g. magic-authn/magic-authn.wasm), the
// layout wasmkube.Options.BuiltinModules takes.
func FS() fs.FS { return modules }

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
