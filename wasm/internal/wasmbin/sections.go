package wasmbin

import (
	"bytes"
	"fmt"
	"strconv"
)

// readValType reads a WebAssembly 2.0 value type (one byte).
func readValType(r *reader) (byte, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch c {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f: // i32 i64 f32 f64 v128 funcref externref
		return c, nil
	case 0x63, 0x64, 0x69: // (ref null ht), (ref ht), exnref
		return 0, fmt.Errorf("%w: value type 0x%02x (typed references, GC or exceptions)", ErrUnsupported, c)
	}
	return 0, fmt.Errorf("%w: value type 0x%02x", ErrInvalid, c)
}

func readValTypes(r *reader) ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	if int(n) > len(r.b)-r.pos {
		return nil, fmt.Errorf("%w: %d value types in %d bytes", ErrInvalid, n, len(r.b)-r.pos)
	}
	out := make([]byte, 0, n)
	for i := uint32(0); i < n; i++ {
		t, err := readValType(r)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func readRefType(r *reader) (byte, error) {
	t, err := readValType(r)
	if err != nil {
		return 0, err
	}
	if t != 0x70 && t != 0x6f {
		return 0, fmt.Errorf("%w: table element type 0x%02x", ErrInvalid, t)
	}
	return t, nil
}

func readName(r *reader) ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	return r.bytes(int(n))
}

// limits are memory or table limits.
type limits struct {
	flags    byte
	min, max uint32
	hasMax   bool
}

func readLimits(r *reader) (limits, error) {
	var l limits
	var err error
	if l.flags, err = r.byte(); err != nil {
		return l, err
	}
	switch {
	case l.flags&0x04 != 0:
		return l, fmt.Errorf("%w: 64-bit memory", ErrUnsupported)
	case l.flags&0x02 != 0:
		return l, fmt.Errorf("%w: shared memory (threads)", ErrUnsupported)
	case l.flags > 1:
		return l, fmt.Errorf("%w: limits flags 0x%02x", ErrInvalid, l.flags)
	}
	if l.min, err = r.u32(); err != nil {
		return l, err
	}
	if l.flags&0x01 != 0 {
		if l.max, err = r.u32(); err != nil {
			return l, err
		}
		l.hasMax = true
		if l.max < l.min {
			return l, fmt.Errorf("%w: limits maximum %d below minimum %d", ErrInvalid, l.max, l.min)
		}
	}
	return l, nil
}

func appendLimits(out []byte, l limits) []byte {
	flags := l.flags
	if l.hasMax {
		flags |= 0x01
	}
	out = append(out, flags)
	out = appendU32(out, l.min)
	if l.hasMax {
		out = appendU32(out, l.max)
	}
	return out
}

// capMemory checks a memory's limits and lowers its maximum to the configured one.
func (rw *rewriter) capMemory(l limits) (limits, error) {
	if l.min > maxPages || (l.hasMax && l.max > maxPages) {
		return l, fmt.Errorf("%w: memory limits above %d pages", ErrInvalid, maxPages)
	}
	rw.res.MinMemoryPages = max(rw.res.MinMemoryPages, l.min)
	limit := rw.opts.MaxMemoryPages
	if limit == 0 {
		return l, nil
	}
	if l.min > limit {
		return l, fmt.Errorf("the module needs %d pages (%d KiB) of memory at start, more than the limit of %d pages (%d KiB)",
			l.min, uint64(l.min)*64, limit, uint64(limit)*64)
	}
	if !l.hasMax || l.max > limit {
		l.max, l.hasMax = limit, true
	}
	return l, nil
}

// checkTableBudget checks that the tables' initial sizes fit MaxTableElements.
func (rw *rewriter) checkTableBudget() error {
	limit := uint64(rw.opts.MaxTableElements)
	if limit == 0 {
		return nil
	}
	var sum uint64
	for _, t := range rw.tables {
		sum += uint64(t.min)
	}
	if sum > limit {
		return fmt.Errorf("the module's tables need %d elements at start, more than the limit of %d", sum, limit)
	}
	return nil
}

// capTable lowers a table's maximum so that all tables together stay within MaxTableElements:
// what the initial sizes leave of it is shared evenly.
func (rw *rewriter) capTable(l limits) limits {
	limit := uint64(rw.opts.MaxTableElements)
	if limit == 0 {
		return l
	}
	var sum uint64
	for _, t := range rw.tables {
		sum += uint64(t.min)
	}
	capped := uint64(l.min) + (limit-sum)/uint64(len(rw.tables))
	if !l.hasMax || uint64(l.max) > capped {
		l.max, l.hasMax = uint32(capped), true
	}
	return l
}

// importDesc is one decoded import.
type importDesc struct {
	module  string
	name    string
	kind    byte
	typeIdx uint32 // functions
	limits  limits // tables and memories
	mutable bool   // globals
}

// readImport reads one import; r is left after it.
func readImport(r *reader) (importDesc, error) {
	var imp importDesc
	module, err := readName(r)
	if err != nil {
		return imp, err
	}
	name, err := readName(r)
	if err != nil {
		return imp, err
	}
	imp.module, imp.name = string(module), string(name)
	kind, err := r.byte()
	if err != nil {
		return imp, err
	}
	imp.kind = kind
	switch kind {
	case 0x00: // function: type index
		imp.typeIdx, err = r.u32()
	case 0x01: // table
		if _, err = readRefType(r); err == nil {
			imp.limits, err = readLimits(r)
		}
	case 0x02: // memory
		imp.limits, err = readLimits(r)
	case 0x03: // global
		var mut byte
		if _, err = readValType(r); err == nil {
			mut, err = r.byte()
		}
		imp.mutable = mut == 1
	case 0x04:
		err = fmt.Errorf("%w: imported exception tag", ErrUnsupported)
	default:
		err = fmt.Errorf("%w: import kind 0x%02x", ErrInvalid, kind)
	}
	return imp, err
}

// typeSection appends the types the rewrite needs.
func (rw *rewriter) typeSection(content []byte) ([]byte, bool, error) {
	if len(rw.newTypes) == 0 {
		return content, true, nil
	}
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	out := appendU32(nil, n+uint32(len(rw.newTypes)))
	out = append(out, content[r.pos:]...)
	for _, t := range rw.newTypes {
		out = append(out, 0x60)
		out = appendU32(out, uint32(len(t.params)))
		out = append(out, t.params...)
		out = appendU32(out, uint32(len(t.results)))
		out = append(out, t.results...)
	}
	return out, true, nil
}

// imports caps imported memories and tables and appends the host functions.
func (rw *rewriter) imports(content []byte) ([]byte, bool, error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	var body []byte
	count := n // the imports written
	for i := uint32(0); i < n; i++ {
		start := r.pos
		if _, err := readName(r); err != nil {
			return nil, false, err
		}
		if _, err := readName(r); err != nil {
			return nil, false, err
		}
		head := r.pos + 1 // the kind byte; a table's element type follows
		r.pos = start
		imp, err := readImport(r)
		if err != nil {
			return nil, false, err
		}
		switch imp.kind {
		case 0x01:
			body = append(body, content[start:head+1]...)
			body = appendLimits(body, rw.capTable(imp.limits))
		case 0x02:
			l, err := rw.capMemory(imp.limits)
			if err != nil {
				return nil, false, err
			}
			if rw.definesMemory(imp) {
				rw.memory, count = l, count-1 // defined in the memory section instead
				continue
			}
			body = append(body, content[start:head]...)
			body = appendLimits(body, l)
		default:
			body = append(body, content[start:r.pos]...)
		}
	}
	for _, name := range []string{rw.opts.CheckName, rw.opts.StackName} {
		if name == "" {
			continue
		}
		count++
		body = appendU32(body, uint32(len(rw.opts.HostModule)))
		body = append(body, rw.opts.HostModule...)
		body = appendU32(body, uint32(len(name)))
		body = append(body, name...)
		body = append(body, 0x00)
		body = appendU32(body, rw.emptyType)
	}
	return append(appendU32(nil, count), body...), true, r.end()
}

func (rw *rewriter) tableSection(content []byte) ([]byte, bool, error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	out := appendU32(nil, n)
	for i := uint32(0); i < n; i++ {
		t, err := readRefType(r)
		if err != nil {
			return nil, false, err
		}
		l, err := readLimits(r)
		if err != nil {
			return nil, false, err
		}
		out = append(out, t)
		out = appendLimits(out, rw.capTable(l))
	}
	return out, true, r.end()
}

func (rw *rewriter) memories(content []byte) ([]byte, bool, error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	if rw.res.DefinedMemory {
		// The section was added empty (prepare refuses a second memory): the imported memory,
		// whose limits imports read, is defined in it.
		return appendLimits(appendU32(nil, 1), rw.memory), true, r.end()
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
	return out, true, r.end()
}

// globalSection checks and shifts the initializers and appends the fuel and the stack estimate.
func (rw *rewriter) globalSection(content []byte) ([]byte, bool, error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	var body []byte
	for i := uint32(0); i < n; i++ {
		start := r.pos
		typ, err := readValType(r)
		if err != nil {
			return nil, false, err
		}
		mut, err := r.byte()
		if err != nil {
			return nil, false, err
		}
		if mut == 1 {
			rw.mutable = append(rw.mutable, rw.globals-n+i)
			// A host reads and writes a v128 global's low 64 bits only (wazero's
			// api.MutableGlobal), so a snapshot could not restore it whole.
			rw.res.StateOutsideMemory = rw.res.StateOutsideMemory || typ == 0x7b
		}
		body = append(body, content[start:r.pos]...)
		if body, err = rw.constExpr(r, body); err != nil {
			return nil, false, fmt.Errorf("global %d: %w", i, err)
		}
	}
	if rw.added > 0 {
		n += 2
		body = append(body, 0x7f, 0x01, 0x41) // mutable i32, i32.const
		body = appendS32(body, max(rw.opts.Budget, 1))
		body = append(body, 0x0b, 0x7f, 0x01, 0x41, 0x00, 0x0b)
		rw.mutable = append(rw.mutable, rw.fuel, rw.sp)
	}
	return append(appendU32(nil, n), body...), true, r.end()
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
		name, err := readName(r)
		if err != nil {
			return nil, false, err
		}
		if p := rw.opts.ExportGlobals; p != "" && bytes.HasPrefix(name, []byte(p)) {
			rw.res.PrefixTaken = true
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
		switch kind {
		case 0x00:
			idx = rw.shift(idx)
		case 0x03:
			if err := rw.checkGlobal(idx); err != nil {
				return nil, false, fmt.Errorf("export %d: %w", i, err)
			}
		}
		out = appendU32(out, idx)
	}
	out, err = rw.exportGlobals(out, n)
	if err != nil {
		return nil, false, err
	}
	return out, true, r.end()
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
			return nil, false, fmt.Errorf("%w: element segment flags %d", ErrInvalid, flags)
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
				return nil, false, fmt.Errorf("element segment %d: %w", i, err)
			}
		}
		if flags&0x03 != 0 { // elemkind or reftype
			start := r.pos
			if flags&0x04 != 0 {
				_, err = readRefType(r)
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
			return nil, false, fmt.Errorf("element segment %d: %w", i, err)
		}
	}
	return out, true, r.end()
}

// data checks the offset expressions of active data segments.
func (rw *rewriter) data(content []byte) ([]byte, bool, error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	for i := uint32(0); i < n; i++ {
		flags, err := r.u32()
		if err != nil {
			return nil, false, err
		}
		switch flags {
		case 0, 2:
			if flags == 2 {
				if _, err := r.u32(); err != nil {
					return nil, false, err
				}
			}
			if _, err := rw.constExpr(r, nil); err != nil {
				return nil, false, fmt.Errorf("data segment %d: %w", i, err)
			}
		case 1:
		default:
			return nil, false, fmt.Errorf("%w: data segment flags %d", ErrInvalid, flags)
		}
		if _, err := readName(r); err != nil { // the bytes
			return nil, false, err
		}
	}
	return content, true, r.end()
}

// constExpr copies a constant expression up to and including its end, checking global indices
// and shifting function indices.
func (rw *rewriter) constExpr(r *reader, out []byte) ([]byte, error) {
	for {
		start := r.pos
		op, err := r.byte()
		if err != nil {
			return nil, err
		}
		switch op {
		case 0x0b:
			return append(out, op), nil
		case 0x23: // global.get
			idx, err := r.u32()
			if err != nil {
				return nil, err
			}
			if err := rw.checkGlobal(idx); err != nil {
				return nil, err
			}
		case 0xd2: // ref.func
			idx, err := r.u32()
			if err != nil {
				return nil, err
			}
			out = append(out, op)
			out = appendU32(out, rw.shift(idx))
			continue
		case 0x41:
			err = r.skipLEB(5)
		case 0x42:
			err = r.skipLEB(10)
		case 0x43:
			_, err = r.bytes(4)
		case 0x44:
			_, err = r.bytes(8)
		case 0xd0: // ref.null
			_, err = readRefType(r)
		case 0xfd: // v128.const
			var sub uint32
			if sub, err = r.u32(); err == nil {
				if sub != 12 {
					return nil, fmt.Errorf("%w: opcode 0xfd %d in a constant expression", ErrInvalid, sub)
				}
				_, err = r.bytes(16)
			}
		default:
			return nil, fmt.Errorf("%w: opcode 0x%02x in a constant expression", ErrUnsupported, op)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r.b[start:r.pos]...)
	}
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

// exportGlobals appends to the export section out (n entries) an export of every mutable global
// the module defines, when Options.ExportGlobals asks for it.
func (rw *rewriter) exportGlobals(out []byte, n uint32) ([]byte, error) {
	prefix := rw.opts.ExportGlobals
	if prefix == "" || len(rw.mutable) == 0 || rw.res.PrefixTaken {
		return out, nil
	}
	body := out[len(appendU32(nil, n)):]
	for _, g := range rw.mutable {
		name := prefix + strconv.FormatUint(uint64(g), 10)
		body = appendU32(body, uint32(len(name)))
		body = append(append(body, name...), 0x03)
		body = appendU32(body, g)
		rw.res.ExportedGlobals = append(rw.res.ExportedGlobals, name)
		if rw.added > 0 && g == rw.fuel && rw.opts.metered() {
			rw.res.FuelGlobal = name
		}
	}
	return append(appendU32(nil, n+uint32(len(rw.mutable))), body...), nil
}
