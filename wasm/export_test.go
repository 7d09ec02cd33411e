package wasm

// What the external tests (package wasm_test) read of the package's internals.
const (
	LogBurst = logBurst
	LogRate  = logRate
)
