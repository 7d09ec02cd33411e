package wasmbin

import (
	"fmt"
)

// readValType reads a value type: one byte, or a reference type with a heap type.
func readValType(r *reader) error {
	c, err := r.byte()
	if err != nil {
		return err
	}
	switch c {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f, 0x69: // i32 i64 f32 f64 v128 funcref externref exnref
		return nil
	case 0x63, 0x64: // (ref null ht), (ref ht)
		return r.skipLEB(5)
	}
	return fmt.Errorf("%w: value type 0x%02x", ErrUnsupported, c)
}

func readValTypes(r *reader) (uint32, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	for i := uint32(0); i < n; i++ {
		if err := readValType(r); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// findEmptyFuncType returns the number of types and the index of a () -> () type, or -1.
func findEmptyFuncType(content []byte) (uint32, int, error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return 0, -1, err
	}
	found := -1
	for i := uint32(0); i < n; i++ {
		form, err := r.byte()
		if err != nil {
			return 0, -1, err
		}
		if form != 0x60 {
			return 0, -1, fmt.Errorf("%w: type form 0x%02x (GC types)", ErrUnsupported, form)
		}
		params, err := readValTypes(r)
		if err != nil {
			return 0, -1, err
		}
		results, err := readValTypes(r)
		if err != nil {
			return 0, -1, err
		}
		if params == 0 && results == 0 && found < 0 {
			found = int(i)
		}
	}
	return n, found, nil
}

func (rw *rewriter) appendEmptyType(content []byte) ([]byte, bool, error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	out := appendU32(nil, n+1)
	out = append(out, content[r.pos:]...)
	return append(out, 0x60, 0x00, 0x00), true, nil
}

func readName(r *reader) ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	return r.bytes(int(n))
}

// readLimits reads memory or table limits and returns where min and max are.
type limits struct {
	flags    byte
	min, max uint64
	hasMax   bool
}

func readLimits(r *reader) (limits, error) {
	var l limits
	var err error
	if l.flags, err = r.byte(); err != nil {
		return l, err
	}
	if l.flags&^0x07 != 0 {
		return l, fmt.Errorf("%w: limits flags 0x%02x", ErrUnsupported, l.flags)
	}
	if l.flags&0x04 != 0 {
		return l, fmt.Errorf("%w: 64-bit memory", ErrUnsupported)
	}
	v, err := r.u32()
	if err != nil {
		return l, err
	}
	l.min = uint64(v)
	if l.flags&0x01 != 0 {
		v, err := r.u32()
		if err != nil {
			return l, err
		}
		l.max, l.hasMax = uint64(v), true
	}
	return l, nil
}

func appendLimits(out []byte, l limits) []byte {
	flags := l.flags
	if l.hasMax {
		flags |= 0x01
	}
	out = append(out, flags)
	out = appendU32(out, uint32(l.min))
	if l.hasMax {
		out = appendU32(out, uint32(l.max))
	}
	return out
}

// capMemory lowers l's maximum to the configured one.
func (rw *rewriter) capMemory(l limits) (limits, error) {
	if rw.res.MinMemoryPages < uint32(l.min) {
		rw.res.MinMemoryPages = uint32(l.min)
	}
	max := uint64(rw.opts.MaxMemoryPages)
	if max == 0 {
		return l, nil
	}
	if l.min > max {
		return l, fmt.Errorf("the module needs %d pages (%d KiB) of memory at start, more than the limit of %d pages (%d KiB)",
			l.min, l.min*64, max, max*64)
	}
	if !l.hasMax || l.max > max {
		l.max, l.hasMax = max, true
	}
	return l, nil
}

func countImports(content []byte) (funcs, globals uint32, err error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return 0, 0, err
	}
	for i := uint32(0); i < n; i++ {
		if _, err := readName(r); err != nil {
			return 0, 0, err
		}
		if _, err := readName(r); err != nil {
			return 0, 0, err
		}
		kind, err := r.byte()
		if err != nil {
			return 0, 0, err
		}
		switch kind {
		case 0x00:
			funcs++
		case 0x03:
			globals++
		}
		if err := skipImportDesc(r, kind); err != nil {
			return 0, 0, err
		}
	}
	return funcs, globals, nil
}

// skipImportDesc skips an import's description of the given kind.
func skipImportDesc(r *reader, kind byte) error {
	switch kind {
	case 0x00: // function: type index
		return r.skipLEB(5)
	case 0x01: // table
		if err := readValType(r); err != nil {
			return err
		}
		_, err := readLimits(r)
		return err
	case 0x02: // memory
		_, err := readLimits(r)
		return err
	case 0x03: // global
		if err := readValType(r); err != nil {
			return err
		}
		_, err := r.byte()
		return err
	case 0x04: // tag
		if _, err := r.byte(); err != nil {
			return err
		}
		return r.skipLEB(5)
	}
	return fmt.Errorf("%w: import kind 0x%02x", ErrUnsupported, kind)
}

// imports caps imported memories and appends the check function import.
func (rw *rewriter) imports(content []byte) ([]byte, bool, error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	var body []byte
	for i := uint32(0); i < n; i++ {
		start := r.pos
		if _, err := readName(r); err != nil {
			return nil, false, err
		}
		if _, err := readName(r); err != nil {
			return nil, false, err
		}
		kind, err := r.byte()
		if err != nil {
			return nil, false, err
		}
		if kind != 0x02 {
			if err := skipImportDesc(r, kind); err != nil {
				return nil, false, err
			}
			body = append(body, content[start:r.pos]...)
			continue
		}
		head := content[start:r.pos]
		l, err := readLimits(r)
		if err != nil {
			return nil, false, err
		}
		if l, err = rw.capMemory(l); err != nil {
			return nil, false, err
		}
		body = append(body, head...)
		body = appendLimits(body, l)
	}
	if rw.checks() {
		n++
		body = appendU32(body, uint32(len(rw.opts.CheckModule)))
		body = append(body, rw.opts.CheckModule...)
		body = appendU32(body, uint32(len(rw.opts.CheckName)))
		body = append(body, rw.opts.CheckName...)
		body = append(body, 0x00)
		body = appendU32(body, rw.checkType)
	}
	return append(appendU32(nil, n), body...), true, nil
}

func (rw *rewriter) memories(content []byte) ([]byte, bool, error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	out := appendU32(nil, n)
	for i := uint32(0); i < n; i++ {
		l, err := readLimits(r)
		if err != nil {
			return nil, false, err
		}
		if l, err = rw.capMemory(l); err != nil {
			return nil, false, err
		}
		out = appendLimits(out, l)
	}
	return out, true, nil
}

// globals shifts ref.func in initializers and appends the loop counter.
func (rw *rewriter) globals(content []byte) ([]byte, bool, error) {
	if !rw.checks() {
		return content, true, nil
	}
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	var body []byte
	for i := uint32(0); i < n; i++ {
		start := r.pos
		if err := readValType(r); err != nil {
			return nil, false, err
		}
		if _, err := r.byte(); err != nil {
			return nil, false, err
		}
		body = append(body, content[start:r.pos]...)
		if body, err = rw.constExpr(r, body); err != nil {
			return nil, false, err
		}
	}
	body = append(body, 0x7f, 0x01, 0x41)
	body = appendS32(body, rw.opts.Interval)
	body = append(body, 0x0b)
	return append(appendU32(nil, n+1), body...), true, nil
}

func (rw *rewriter) exports(content []byte) ([]byte, bool, error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	out := appendU32(nil, n)
	for i := uint32(0); i < n; i++ {
		start := r.pos
		if _, err := readName(r); err != nil {
			return nil, false, err
		}
		kind, err := r.byte()
		if err != nil {
			return nil, false, err
		}
		out = append(out, content[start:r.pos]...)
		idx, err := r.u32()
		if err != nil {
			return nil, false, err
		}
		if kind == 0x00 {
			idx = rw.shift(idx)
		}
		out = appendU32(out, idx)
	}
	return out, true, nil
}

func (rw *rewriter) funcIndices(r *reader, out []byte) ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out = appendU32(out, n)
	for i := uint32(0); i < n; i++ {
		idx, err := r.u32()
		if err != nil {
			return nil, err
		}
		out = appendU32(out, rw.shift(idx))
	}
	return out, nil
}

func (rw *rewriter) exprs(r *reader, out []byte) ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out = appendU32(out, n)
	for i := uint32(0); i < n; i++ {
		if out, err = rw.constExpr(r, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (rw *rewriter) elements(content []byte) ([]byte, bool, error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	out := appendU32(nil, n)
	for i := uint32(0); i < n; i++ {
		flags, err := r.u32()
		if err != nil {
			return nil, false, err
		}
		out = appendU32(out, flags)
		if flags > 7 {
			return nil, false, fmt.Errorf("%w: element segment flags %d", ErrUnsupported, flags)
		}
		if flags&0x02 != 0 && flags&0x01 == 0 { // explicit table index
			t, err := r.u32()
			if err != nil {
				return nil, false, err
			}
			out = appendU32(out, t)
		}
		if flags&0x01 == 0 { // active: offset expression
			if out, err = rw.constExpr(r, out); err != nil {
				return nil, false, err
			}
		}
		if flags&0x03 != 0 { // elemkind or reftype
			start := r.pos
			if flags&0x04 != 0 {
				err = readValType(r)
			} else {
				_, err = r.byte()
			}
			if err != nil {
				return nil, false, err
			}
			out = append(out, content[start:r.pos]...)
		}
		if flags&0x04 != 0 {
			out, err = rw.exprs(r, out)
		} else {
			out, err = rw.funcIndices(r, out)
		}
		if err != nil {
			return nil, false, err
		}
	}
	return out, true, nil
}

func (rw *rewriter) code(content []byte) ([]byte, bool, error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	out := appendU32(nil, n)
	var body []byte
	for i := uint32(0); i < n; i++ {
		size, err := r.u32()
		if err != nil {
			return nil, false, err
		}
		end := r.pos + int(size)
		if end > len(content) {
			return nil, false, fmt.Errorf("function %d: body past the end of the section", i)
		}
		fr := &reader{b: content[:end], pos: r.pos}
		body = body[:0]
		// Locals are copied as they are.
		locals, err := fr.u32()
		if err != nil {
			return nil, false, err
		}
		for j := uint32(0); j < locals; j++ {
			if err := fr.skipLEB(5); err != nil {
				return nil, false, err
			}
			if err := readValType(fr); err != nil {
				return nil, false, err
			}
		}
		body = append(body, content[r.pos:fr.pos]...)
		if body, err = rw.instructions(fr, body, false); err != nil {
			return nil, false, fmt.Errorf("function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
		r.pos = end
	}
	return out, true, nil
}

// names shifts the function indices of the function-names (1) and local-names (2) subsections
// and drops the other subsections, which also refer to functions by index.
func (rw *rewriter) names(content []byte) ([]byte, bool, error) {
	r := &reader{b: content}
	if _, err := readName(r); err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), content[:r.pos]...)
	for !r.eof() {
		id, err := r.byte()
		if err != nil {
			return nil, false, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, false, err
		}
		sub, err := r.bytes(int(size))
		if err != nil {
			return nil, false, err
		}
		if id != 1 && id != 2 {
			if id == 0 { // module name
				out = append(out, id)
				out = appendU32(out, size)
				out = append(out, sub...)
			}
			continue
		}
		sr := &reader{b: sub}
		cnt, err := sr.u32()
		if err != nil {
			return nil, false, err
		}
		body := appendU32(nil, cnt)
		for i := uint32(0); i < cnt; i++ {
			idx, err := sr.u32()
			if err != nil {
				return nil, false, err
			}
			body = appendU32(body, rw.shift(idx))
			start := sr.pos
			if id == 1 {
				if _, err := readName(sr); err != nil {
					return nil, false, err
				}
			} else {
				locals, err := sr.u32()
				if err != nil {
					return nil, false, err
				}
				for j := uint32(0); j < locals; j++ {
					if err := sr.skipLEB(5); err != nil {
						return nil, false, err
					}
					if _, err := readName(sr); err != nil {
						return nil, false, err
					}
				}
			}
			body = append(body, sub[start:sr.pos]...)
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	return out, true, nil
}
