//go:build unix

package wasm

import (
	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// memoryAllocator maps each instance's linear memory on its own: the whole maximum is reserved
// at once (address space only), pages count towards the process's memory only once the guest
// touches them, growing never copies, and closing the instance returns the pages to the system
// at once instead of leaving garbage for the Go collector. With it, what an instance costs the
// host is bounded by its memory limit at every moment.
var memoryAllocator experimental.MemoryAllocator = experimental.MemoryAllocatorFunc(allocateMapped)

type mappedMemory struct{ buf []byte }

func allocateMapped(_, max uint64) experimental.LinearMemory {
	buf, err := unix.Mmap(-1, 0, int(max), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	if err != nil {
		return &sliceMemory{max: max} // no address space left: a Go slice, as wazero would use
	}
	return &mappedMemory{buf: buf}
}

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

// Reallocate implements experimental.LinearMemory: the memory grows in place up to its maximum.
func (m *mappedMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size:size]
}

// Free implements experimental.LinearMemory.
func (m *mappedMemory) Free() {
	if m.buf != nil {
		_ = unix.Munmap(m.buf)
		m.buf = nil
	}
}
