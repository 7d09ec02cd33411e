package wasmbin

import "fmt"

// constExpr copies a constant expression (up to and including its end), shifting ref.func.
func (rw *rewriter) constExpr(r *reader, out []byte) ([]byte, error) {
	return rw.instructions(r, out, true)
}

// instructions copies instructions from r to out: function indices shift for the new import,
// and every loop header gets the counter check. A code body runs to the end of r; a constant
// expression stops after its end opcode.
func (rw *rewriter) instructions(r *reader, out []byte, constExpr bool) ([]byte, error) {
	depth := 0
	for !r.eof() {
		start := r.pos
		op, err := r.byte()
		if err != nil {
			return nil, err
		}
		switch op {
		case 0x10, 0x12, 0xd2: // call, return_call, ref.func
			idx, err := r.u32()
			if err != nil {
				return nil, err
			}
			out = append(out, op)
			out = appendU32(out, rw.shift(idx))
			continue
		case 0x02, 0x04, 0x06: // block, if, try
			depth++
			err = skipBlockType(r)
		case 0x03: // loop
			depth++
			if err := skipBlockType(r); err != nil {
				return nil, err
			}
			out = append(out, r.b[start:r.pos]...)
			if rw.checks() && !constExpr {
				out = rw.appendCheck(out)
				rw.res.Loops++
			}
			continue
		case 0x1f: // try_table
			depth++
			err = skipTryTable(r)
		case 0x0b: // end
			if depth == 0 && constExpr {
				return append(out, op), nil
			}
			depth--
		default:
			err = skipImmediates(r, op)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r.b[start:r.pos]...)
	}
	if constExpr {
		return nil, fmt.Errorf("constant expression without end")
	}
	return out, nil
}

// appendCheck appends: counter -= 1; if counter == 0 { check(); counter = interval }.
func (rw *rewriter) appendCheck(out []byte) []byte {
	g := rw.counter
	out = append(out, 0x23)
	out = appendU32(out, g)
	out = append(out, 0x41, 0x01, 0x6b, 0x24)
	out = appendU32(out, g)
	out = append(out, 0x23)
	out = appendU32(out, g)
	out = append(out, 0x45, 0x04, 0x40, 0x10)
	out = appendU32(out, rw.checkFunc)
	out = append(out, 0x41)
	out = appendS32(out, rw.opts.Interval)
	out = append(out, 0x24)
	out = appendU32(out, g)
	return append(out, 0x0b)
}

func skipBlockType(r *reader) error {
	c, err := r.byte()
	if err != nil {
		return err
	}
	switch {
	case c == 0x40 || c == 0x7f || c == 0x7e || c == 0x7d || c == 0x7c || c == 0x7b || c == 0x70 || c == 0x6f || c == 0x69:
		return nil
	case c == 0x63 || c == 0x64:
		return r.skipLEB(5)
	}
	r.pos--
	return r.skipLEB(5) // s33 type index
}

func skipTryTable(r *reader) error {
	if err := skipBlockType(r); err != nil {
		return err
	}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		kind, err := r.byte()
		if err != nil {
			return err
		}
		if kind <= 1 { // catch, catch_ref: tag index
			if err := r.skipLEB(5); err != nil {
				return err
			}
		}
		if err := r.skipLEB(5); err != nil { // label
			return err
		}
	}
	return nil
}

func skipMemArg(r *reader) error {
	align, err := r.u32()
	if err != nil {
		return err
	}
	if align&0x40 != 0 { // multi-memory: memory index follows
		if err := r.skipLEB(5); err != nil {
			return err
		}
	}
	return r.skipLEB(10) // offset (u64 for memory64)
}

func skipN(r *reader, n int) error {
	_, err := r.bytes(n)
	return err
}

// skipImmediates skips the immediates of every opcode that needs no rewriting.
func skipImmediates(r *reader, op byte) error {
	switch {
	case op <= 0x01 || op == 0x05 || op == 0x0a || op == 0x0f || op == 0x19 || op == 0x1a || op == 0x1b || op == 0xd1 || op == 0xd3 || op == 0xd5:
		return nil // unreachable nop else throw_ref return catch_all drop select ref.is_null ref.as_non_null ref.eq
	case op == 0x07 || op == 0x08 || op == 0x09 || op == 0x18 || op == 0x0c || op == 0x0d || op == 0xd4 || op == 0xd6:
		return r.skipLEB(5) // catch throw rethrow delegate br br_if br_on_null br_on_non_null
	case op == 0x0e: // br_table
		n, err := r.u32()
		if err != nil {
			return err
		}
		for i := uint32(0); i <= n; i++ {
			if err := r.skipLEB(5); err != nil {
				return err
			}
		}
		return nil
	case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect
		if err := r.skipLEB(5); err != nil {
			return err
		}
		return r.skipLEB(5)
	case op == 0x14 || op == 0x15: // call_ref, return_call_ref
		return r.skipLEB(5)
	case op == 0x1c: // select t*
		_, err := readValTypes(r)
		return err
	case op >= 0x20 && op <= 0x26: // local.* global.* table.get/set
		return r.skipLEB(5)
	case op >= 0x28 && op <= 0x3e: // loads and stores
		return skipMemArg(r)
	case op == 0x3f || op == 0x40: // memory.size, memory.grow
		return r.skipLEB(5)
	case op == 0x41:
		return r.skipLEB(5)
	case op == 0x42:
		return r.skipLEB(10)
	case op == 0x43:
		return skipN(r, 4)
	case op == 0x44:
		return skipN(r, 8)
	case op >= 0x45 && op <= 0xc4: // numeric
		return nil
	case op == 0xd0: // ref.null heaptype
		return r.skipLEB(5)
	case op == 0xfc:
		return skipMisc(r)
	case op == 0xfd:
		return skipSIMD(r)
	case op == 0xfe:
		return skipAtomic(r)
	}
	return fmt.Errorf("%w: opcode 0x%02x at offset %d", ErrUnsupported, op, r.pos-1)
}

func skipMisc(r *reader) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 7: // saturating truncation
		return nil
	case sub == 8 || sub == 10 || sub == 12 || sub == 14: // memory.init memory.copy table.init table.copy
		if err := r.skipLEB(5); err != nil {
			return err
		}
		return r.skipLEB(5)
	case sub == 9 || sub == 11 || sub == 13 || (sub >= 15 && sub <= 17): // data.drop memory.fill elem.drop table.grow/size/fill
		return r.skipLEB(5)
	}
	return fmt.Errorf("%w: opcode 0xfc %d", ErrUnsupported, sub)
}

func skipSIMD(r *reader) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads, stores, load*_zero
		return skipMemArg(r)
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		return skipN(r, 16)
	case sub >= 21 && sub <= 34: // extract/replace lane
		return skipN(r, 1)
	case sub >= 84 && sub <= 91: // load/store lane
		if err := skipMemArg(r); err != nil {
			return err
		}
		return skipN(r, 1)
	case sub <= 0x113: // every other SIMD and relaxed-SIMD opcode has no immediate
		return nil
	}
	return fmt.Errorf("%w: opcode 0xfd %d", ErrUnsupported, sub)
}

func skipAtomic(r *reader) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	if sub == 0x03 { // atomic.fence
		return skipN(r, 1)
	}
	if sub <= 0x4e {
		return skipMemArg(r)
	}
	return fmt.Errorf("%w: opcode 0xfe %d", ErrUnsupported, sub)
}
