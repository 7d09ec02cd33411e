//go:build !unix

package wasm

import "github.com/tetratelabs/wazero/experimental"

// mapMemory is a Go slice where there is no mmap.
func mapMemory(_, max uint64) experimental.LinearMemory { return &sliceMemory{max: max} }
