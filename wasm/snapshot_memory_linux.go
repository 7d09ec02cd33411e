//go:build linux

package wasm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// cowMemory keeps a resident's memory at its snapshot in a memfd, and maps the live memory as a
// private (copy-on-write) mapping of that memfd: pages a call never wrote are the memfd's own
// pages and need nothing to be restored; the kernel's /proc/self/pagemap tells which pages were
// written (they became anonymous copies), and only those are copied back. A call of a Go policy
// writes a few dozen of its ~750 pages; copying all 3 MB back took more time than the call.
//
// Written pages stay anonymous after they are copied back, so what a restore copies is the set
// of pages calls ever wrote, not more. (madvise(MADV_DONTNEED) would drop them instead, at the
// price of a page fault at their next write, inside the next call.)
type cowMemory struct {
	snap    []byte   // the memfd, mapped shared and read only
	pagemap *os.File // /proc/self/pagemap
	entries []byte   // a buffer for the live memory's pagemap entries
}

// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
const (
	pmPresent = 1 << 63
	pmSwapped = 1 << 62
	pmFile    = 1 << 61
)

// saveCopyOnWrite saves live in a memfd and maps live over it as a private mapping of it; live
// must be the start of lm, a mapping of its own (mapMemory's), never Go memory.
func saveCopyOnWrite(live []byte, lm experimental.LinearMemory) (_ savedMemory, err error) {
	if mm, ok := lm.(*mappedMemory); !ok || len(live) == 0 || len(mm.buf) < len(live) || &mm.buf[0] != &live[0] {
		return nil, errors.New("the memory is not a mapping of its own")
	}
	pageSize := os.Getpagesize()
	if len(live)%pageSize != 0 || uintptr(unsafe.Pointer(&live[0]))%uintptr(pageSize) != 0 {
		return nil, fmt.Errorf("memory of %d bytes is not page aligned", len(live))
	}
	pagemap, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			pagemap.Close()
		}
	}()
	fd, err := unix.MemfdCreate("wasmkube-snapshot", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd) // the mappings keep the memfd
	if err := writeAll(fd, live); err != nil {
		return nil, err
	}
	snap, err := unix.Mmap(fd, 0, len(live), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	// Same address, same contents: the guest sees no difference.
	if _, err := unix.MmapPtr(fd, 0, unsafe.Pointer(&live[0]), uintptr(len(live)), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED); err != nil {
		_ = unix.Munmap(snap)
		return nil, err
	}
	return &cowMemory{snap: snap, pagemap: pagemap, entries: make([]byte, len(live)/pageSize*8)}, nil
}

func writeAll(fd int, b []byte) error {
	if err := unix.Ftruncate(fd, int64(len(b))); err != nil {
		return err
	}
	for off := 0; off < len(b); {
		n, err := unix.Pwrite(fd, b[off:], int64(off))
		if err != nil {
			return err
		}
		off += n
	}
	return nil
}

func (c *cowMemory) saved() []byte { return c.snap }

// restore copies back the pages of live that are not the memfd's: written (anonymous) or
// swapped out. If the page map cannot be read, it copies everything.
func (c *cowMemory) restore(live []byte) {
	pageSize := os.Getpagesize()
	off := int64(uintptr(unsafe.Pointer(&live[0])) / uintptr(pageSize) * 8)
	if n, err := c.pagemap.ReadAt(c.entries, off); err != nil || n != len(c.entries) {
		copy(live, c.snap)
		return
	}
	for i := 0; i < len(c.entries); i += 8 {
		e := binary.LittleEndian.Uint64(c.entries[i:])
		if e&pmPresent != 0 && e&pmFile == 0 || e&pmSwapped != 0 {
			p := i / 8 * pageSize
			copy(live[p:p+pageSize], c.snap[p:p+pageSize])
		}
	}
}

func (c *cowMemory) release() {
	_ = unix.Munmap(c.snap)
	_ = c.pagemap.Close()
}
