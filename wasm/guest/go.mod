// The guest SDK is a Go module of its own so that a module author's go.mod requires only it:
// no Kubernetes, no wazero, nothing but the standard library (wasm/guest/standalone_test.go
// checks). Keep it without requirements. The server's module uses it through a replace of this
// directory (see the go.mod at the repository's root).
module github.com/wasmkube/wasmkube/wasm/guest

go 1.24
