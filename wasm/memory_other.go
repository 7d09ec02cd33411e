//go:build !unix

package wasm

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator is wazero's own where there is no mmap: memory is a Go slice.
var memoryAllocator experimental.MemoryAllocator
