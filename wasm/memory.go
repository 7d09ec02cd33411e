package wasm

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator allocates every instance's linear memory (see mapMemory).
var memoryAllocator experimental.MemoryAllocator = experimental.MemoryAllocatorFunc(mapMemory)

// sliceMemory is a linear memory in a Go slice that grows by copying.
type sliceMemory struct {
	buf []byte
	max uint64
}

// Reallocate implements experimental.LinearMemory.
func (m *sliceMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if size > uint64(len(m.buf)) {
		m.buf = append(m.buf, make([]byte, size-uint64(len(m.buf)))...)
	}
	return m.buf[:size]
}

// Free implements experimental.LinearMemory.
func (m *sliceMemory) Free() { m.buf = nil }
