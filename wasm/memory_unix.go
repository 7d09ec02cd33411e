//go:build unix

package wasm

import (
	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// mapMemory maps an instance's linear memory on its own: the whole maximum is reserved at once
// (address space only), pages count towards the process's memory only once the guest touches
// them, growing never copies, and closing the instance returns the pages to the system at once
// instead of leaving garbage for the Go collector. With it, what an instance's linear memory
// costs the host is bounded by its memory limit at every moment (a resident instance also keeps
// a saved copy of it: ModuleConfig.Snapshot).
//
// # Notes
//
//   - wazero frees an instance's memory when the instance is closed. Unmapping pulls the memory
//     from under any code of the instance still running (the process dies of a segmentation
//     fault), so an instance must never be closed while its code runs: modules close their
//     instances between calls, and Runtime.Close waits for running code (see activity).
func mapMemory(_, max uint64) experimental.LinearMemory {
	buf, err := unix.Mmap(-1, 0, int(max), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	if err != nil {
		return &sliceMemory{max: max} // no address space left: a Go slice, as wazero would use
	}
	return &mappedMemory{buf: buf}
}

// mappedMemory is a linear memory in its own mapping.
type mappedMemory struct{ buf []byte }

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
