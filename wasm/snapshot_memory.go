package wasm

import (
	"bytes"

	"github.com/tetratelabs/wazero/experimental"
)

// savedMemory is a resident instance's linear memory as saved at its snapshot, and how to
// bring the live memory back to it after a call.
type savedMemory interface {
	// saved is the memory at the snapshot (read only).
	saved() []byte
	// restore makes live, the instance's memory of the same size, equal to saved again.
	restore(live []byte)
	// release frees what the copy holds.
	release()
}

// saveMemory saves live, the memory of a resident instance that lm allocated: on Linux, when
// lm is a mapping of its own, as a copy-on-write mapping that restores only the pages a call
// wrote (see cowMemory); elsewhere, or if that fails, as a plain copy.
func saveMemory(live []byte, lm experimental.LinearMemory) savedMemory {
	if s, err := saveCopyOnWrite(live, lm); err == nil {
		return s
	}
	return &copiedMemory{b: bytes.Clone(live)}
}

// copiedMemory is a plain copy; restoring copies all of it back.
type copiedMemory struct{ b []byte }

func (c *copiedMemory) saved() []byte       { return c.b }
func (c *copiedMemory) restore(live []byte) { copy(live, c.b) }
func (c *copiedMemory) release()            { c.b = nil }
