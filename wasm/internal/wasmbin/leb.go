package wasmbin

import (
	"errors"
	"fmt"
)

var errOverflow = errors.New("LEB128 value overflows")

// reader reads a WebAssembly binary.
type reader struct {
	b   []byte
	pos int
}

func (r *reader) eof() bool { return r.pos >= len(r.b) }

func (r *reader) byte() (byte, error) {
	if r.pos >= len(r.b) {
		return 0, fmt.Errorf("unexpected end at offset %d", r.pos)
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

func (r *reader) bytes(n int) ([]byte, error) {
	if n < 0 || r.pos+n > len(r.b) {
		return nil, fmt.Errorf("unexpected end at offset %d (want %d bytes)", r.pos, n)
	}
	s := r.b[r.pos : r.pos+n]
	r.pos += n
	return s, nil
}

// u32 reads an unsigned LEB128 value of at most 32 bits.
func (r *reader) u32() (uint32, error) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= 35 {
			return 0, errOverflow
		}
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if v > 0xffffffff {
				return 0, errOverflow
			}
			return uint32(v), nil
		}
	}
}

// skipLEB skips one LEB128 value (signed or unsigned) of at most maxBytes bytes.
func (r *reader) skipLEB(maxBytes int) error {
	for i := 0; i < maxBytes; i++ {
		c, err := r.byte()
		if err != nil {
			return err
		}
		if c&0x80 == 0 {
			return nil
		}
	}
	return errOverflow
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// end reports an error when r has bytes left.
func (r *reader) end() error {
	if !r.eof() {
		return fmt.Errorf("%w: %d bytes after the end", ErrInvalid, len(r.b)-r.pos)
	}
	return nil
}

// appendS33 appends a non-negative signed 33-bit LEB128 value (a block type's type index).
func appendS33(b []byte, v uint32) []byte {
	x := int64(v)
	for {
		c := byte(x & 0x7f)
		x >>= 7
		if x == 0 && c&0x40 == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// s33 reads a signed 33-bit LEB128 value (a block type's type index).
func (r *reader) s33() (int64, error) {
	var v int64
	for shift := uint(0); ; shift += 7 {
		if shift >= 35 {
			return 0, errOverflow
		}
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= int64(c&0x7f) << shift
		if c&0x80 == 0 {
			if shift+7 < 64 && c&0x40 != 0 {
				v |= -1 << (shift + 7)
			}
			return v, nil
		}
	}
}
