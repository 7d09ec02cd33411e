package wasmbin

import (
	"fmt"
)

const (
	// smallLeaf is the size up to which a function without calls and loops is not charged.
	smallLeaf = 64
	// smallLeafFrame is the frame estimate up to which such a function is not counted on the stack.
	smallLeafFrame = 4096
	// slotBytes and frameBytes make a frame's estimate: a slot per parameter, local and value the
	// function can define (wazero gives every spilled value its own slot, 16 bytes for v128),
	// plus return address, saved registers and alignment.
	slotBytes  = 16
	frameBytes = 256
	// maxLocals bounds a function's parameters and locals, as browsers and wasmtime do.
	maxLocals = 50000
	// memoryShift and tableShift scale a bulk instruction's size operand into fuel: one unit per
	// 16 bytes of memory, per 2 table elements; pageShift one memory page into fuel (64 KiB / 16).
	memoryShift = 4
	tableShift  = 1
	pageShift   = 12
	// hostCallCost is what a call of an imported (host) function pays: host functions take
	// hundreds of nanoseconds to microseconds, a thousand instructions' worth.
	hostCallCost = 1000
)

// instrKind is what the rewrite does with an instruction.
type instrKind uint8

const (
	kPlain   instrKind = iota
	kBlock             // block: opens a label, falls through
	kLoop              // loop header: charged
	kIf                // if: opens a label, conditional
	kControl           // else, br, br_if, br_table, unreachable: transfers control
	kEnd
	kReturn
	kCall         // call: the index shifts
	kCallIndirect // call_indirect
	kRefFunc      // ref.func: the index shifts
	kBulkMemory   // memory.init, memory.copy, memory.fill: charged by size
	kBulkTable    // table.init, table.copy, table.grow, table.fill: charged by size
	kMemoryGrow   // charged by pages
)

// instr is one decoded instruction of a function body.
type instr struct {
	start, end int // its bytes in the body
	kind       instrKind
	idx        uint32 // function index of call and ref.func
	match      int    // block, loop, if: the index of the matching end
	defines    uint32 // values it defines beyond one (calls and typed blocks with several)
}

// function is a decoded function body.
type function struct {
	body    []byte
	locals  []byte // the locals' declaration, as written
	params  uint32
	nLocals uint32 // declared locals, not counting parameters
	groups  uint32 // local declaration groups
	instrs  []instr
}

// code rewrites the code section.
func (rw *rewriter) code(content []byte) ([]byte, bool, error) {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	if int(n) != rw.res.Functions {
		return nil, false, fmt.Errorf("%w: %d function bodies for %d functions", ErrInvalid, n, rw.res.Functions)
	}
	out := appendU32(nil, n)
	var body []byte
	for i := uint32(0); i < n; i++ {
		size, err := r.u32()
		if err != nil {
			return nil, false, err
		}
		b, err := r.bytes(int(size))
		if err != nil {
			return nil, false, fmt.Errorf("function %d: %w", i, err)
		}
		f, err := rw.decodeFunction(rw.funcImports+i, b)
		if err != nil {
			return nil, false, fmt.Errorf("function %d: %w", i, err)
		}
		body = rw.emit(body[:0], f, rw.funcTypes[rw.funcImports+i])
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	return out, true, r.end()
}

// decodeFunction decodes a body and checks the indices that the rewrite extends.
func (rw *rewriter) decodeFunction(fn uint32, b []byte) (*function, error) {
	f := &function{body: b, params: uint32(len(rw.types[rw.funcTypes[fn]].params))}
	r := &reader{b: b}
	groups, err := r.u32()
	if err != nil {
		return nil, err
	}
	f.groups = groups
	total := uint64(f.params)
	for j := uint32(0); j < groups; j++ {
		cnt, err := r.u32()
		if err != nil {
			return nil, err
		}
		if _, err := readValType(r); err != nil {
			return nil, err
		}
		if total += uint64(cnt); total > maxLocals {
			return nil, fmt.Errorf("%w: more than %d parameters and locals", ErrUnsupported, maxLocals)
		}
	}
	f.locals, f.nLocals = b[:r.pos], uint32(total)-f.params
	if f.instrs, err = rw.decodeInstrs(r, f.params+f.nLocals); err != nil {
		return nil, err
	}
	return f, nil
}

// decodeInstrs decodes a body's instructions up to its final end.
func (rw *rewriter) decodeInstrs(r *reader, locals uint32) ([]instr, error) {
	var out []instr
	var open []int // indices of the blocks, loops and ifs not yet ended
	for {
		if r.eof() {
			return nil, fmt.Errorf("%w: the body ends before its final end", ErrInvalid)
		}
		in := instr{start: r.pos}
		if err := rw.decodeInstr(r, &in, locals); err != nil {
			return nil, fmt.Errorf("at offset %d: %w", in.start, err)
		}
		in.end = r.pos
		switch in.kind {
		case kBlock, kLoop, kIf:
			open = append(open, len(out))
		case kEnd:
			if len(open) == 0 {
				out = append(out, in)
				if !r.eof() {
					return nil, fmt.Errorf("%w: code after the function's final end", ErrInvalid)
				}
				return out, nil
			}
			out[open[len(open)-1]].match = len(out)
			open = open[:len(open)-1]
		}
		out = append(out, in)
	}
}

// decodeInstr reads one instruction into in.
func (rw *rewriter) decodeInstr(r *reader, in *instr, locals uint32) error {
	op, err := r.byte()
	if err != nil {
		return err
	}
	switch op {
	case 0x00, 0x05, 0x0c, 0x0d: // unreachable, else, br, br_if
		in.kind = kControl
		if op >= 0x0c {
			return r.skipLEB(5)
		}
		return nil
	case 0x01, 0x1a, 0x1b, 0xd1: // nop, drop, select, ref.is_null
		return nil
	case 0x02, 0x03, 0x04: // block, loop, if
		in.kind = map[byte]instrKind{0x02: kBlock, 0x03: kLoop, 0x04: kIf}[op]
		in.defines, err = rw.blockType(r)
		return err
	case 0x0b:
		in.kind = kEnd
		return nil
	case 0x0e: // br_table
		in.kind = kControl
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
	case 0x0f:
		in.kind = kReturn
		return nil
	case 0x10, 0xd2: // call, ref.func
		in.kind = kCall
		if op == 0xd2 {
			in.kind = kRefFunc
		}
		if in.idx, err = r.u32(); err != nil {
			return err
		}
		if in.idx >= uint32(len(rw.funcTypes)) {
			return fmt.Errorf("%w: function index %d out of range (the module has %d functions)", ErrInvalid, in.idx, len(rw.funcTypes))
		}
		if op == 0x10 {
			in.defines = uint32(len(rw.types[rw.funcTypes[in.idx]].results))
		}
		return nil
	case 0x11: // call_indirect
		in.kind = kCallIndirect
		t, err := r.u32()
		if err != nil {
			return err
		}
		if err := rw.checkType(t); err != nil {
			return err
		}
		in.defines = uint32(len(rw.types[t].results))
		return r.skipLEB(5)
	case 0x1c: // select t*
		_, err := readValTypes(r)
		return err
	case 0x20, 0x21, 0x22: // local.get, local.set, local.tee
		idx, err := r.u32()
		if err != nil {
			return err
		}
		if idx >= locals {
			return fmt.Errorf("%w: local index %d out of range (the function has %d locals)", ErrInvalid, idx, locals)
		}
		return nil
	case 0x23, 0x24: // global.get, global.set
		idx, err := r.u32()
		if err != nil {
			return err
		}
		return rw.checkGlobal(idx)
	case 0x25, 0x26: // table.get, table.set
		rw.res.StateOutsideMemory = rw.res.StateOutsideMemory || op == 0x26
		return r.skipLEB(5)
	case 0x3f: // memory.size
		return r.skipLEB(5)
	case 0x40:
		in.kind = kMemoryGrow
		return r.skipLEB(5)
	case 0x41:
		return r.skipLEB(5)
	case 0x42:
		return r.skipLEB(10)
	case 0x43:
		_, err := r.bytes(4)
		return err
	case 0x44:
		_, err := r.bytes(8)
		return err
	case 0xd0: // ref.null
		_, err := readRefType(r)
		return err
	case 0xfc:
		if sub, err := (&reader{b: r.b, pos: r.pos}).u32(); err == nil && (sub == 9 || sub == 13) {
			rw.res.StateOutsideMemory = true // data.drop, elem.drop
		}
		err := decodeMisc(r, in)
		rw.res.StateOutsideMemory = rw.res.StateOutsideMemory || in.kind == kBulkTable
		return err
	case 0xfd:
		return decodeSIMD(r)
	}
	switch {
	case op >= 0x28 && op <= 0x3e: // loads and stores
		return readMemArg(r)
	case op >= 0x45 && op <= 0xc4: // numeric
		return nil
	}
	if name, ok := unsupportedOps[op]; ok {
		return fmt.Errorf("%w: %s (opcode 0x%02x)", ErrUnsupported, name, op)
	}
	return fmt.Errorf("%w: opcode 0x%02x", ErrInvalid, op)
}

// unsupportedOps are opcodes of proposals beyond WebAssembly 2.0.
var unsupportedOps = map[byte]string{
	0x06: "exceptions", 0x07: "exceptions", 0x08: "exceptions", 0x09: "exceptions", 0x0a: "exceptions",
	0x18: "exceptions", 0x19: "exceptions", 0x1f: "exceptions",
	0x12: "tail calls", 0x13: "tail calls", 0x14: "typed function references", 0x15: "tail calls",
	0xd3: "typed function references", 0xd4: "typed function references", 0xd5: "typed function references",
	0xd6: "typed function references", 0xfb: "garbage collection", 0xfe: "threads",
}

// blockType reads a block type and returns the values the block defines beyond one.
func (rw *rewriter) blockType(r *reader) (uint32, error) {
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch c {
	case 0x40, 0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f:
		return 0, nil
	case 0x63, 0x64, 0x69:
		return 0, fmt.Errorf("%w: block type 0x%02x", ErrUnsupported, c)
	}
	r.pos--
	v, err := r.s33()
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, fmt.Errorf("%w: block type %d", ErrInvalid, v)
	}
	if err := rw.checkType(uint32(v)); err != nil {
		return 0, err
	}
	t := rw.types[v]
	return uint32(len(t.params) + len(t.results)), nil
}

func readMemArg(r *reader) error {
	align, err := r.u32()
	if err != nil {
		return err
	}
	if align&0x40 != 0 {
		return fmt.Errorf("%w: multiple memories", ErrUnsupported)
	}
	return r.skipLEB(5)
}

func decodeMisc(r *reader, in *instr) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 7: // saturating truncation
		return nil
	case sub == 8 || sub == 10 || sub == 12 || sub == 14: // memory.init memory.copy table.init table.copy
		in.kind = kBulkMemory
		if sub >= 12 {
			in.kind = kBulkTable
		}
		if err := r.skipLEB(5); err != nil {
			return err
		}
		return r.skipLEB(5)
	case sub == 11 || sub == 15 || sub == 17: // memory.fill table.grow table.fill
		in.kind = kBulkTable
		if sub == 11 {
			in.kind = kBulkMemory
		}
		return r.skipLEB(5)
	case sub == 9 || sub == 13 || sub == 16: // data.drop elem.drop table.size
		return r.skipLEB(5)
	}
	return fmt.Errorf("%w: opcode 0xfc %d", ErrInvalid, sub)
}

func decodeSIMD(r *reader) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads, stores, load*_zero
		return readMemArg(r)
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		_, err := r.bytes(16)
		return err
	case sub >= 21 && sub <= 34: // extract/replace lane
		_, err := r.bytes(1)
		return err
	case sub >= 84 && sub <= 91: // load/store lane
		if err := readMemArg(r); err != nil {
			return err
		}
		_, err := r.bytes(1)
		return err
	case sub <= 0xff: // every other SIMD opcode has no immediate
		return nil
	case sub <= 0x113:
		return fmt.Errorf("%w: relaxed SIMD (opcode 0xfd %d)", ErrUnsupported, sub)
	}
	return fmt.Errorf("%w: opcode 0xfd %d", ErrInvalid, sub)
}

// plan is what the rewrite inserts into one function.
type plan struct {
	entryCost uint32 // instructions outside loops
	foldAt    int    // the loop that pays the entry's cost, or -1: charged at entry
	frame     uint32
	leaf      bool // a small leaf: neither charged nor counted
	hasBulk   bool
	scratch   uint32 // the i32 local that holds a charge
	bulkLocal uint32 // the i32 local that holds a bulk instruction's size
	metered   bool
	counted   bool
	newLocals uint32
}

// planFunction decides where the charges go.
func (rw *rewriter) planFunction(f *function) plan {
	p := plan{foldAt: -1, metered: rw.opts.metered(), counted: rw.opts.stackCounted()}
	loopEnds := make(map[int]bool)
	calls, depth := false, 0
	var defines uint64
	for _, in := range f.instrs {
		switch in.kind {
		case kLoop:
			loopEnds[in.match] = true
		case kCall, kCallIndirect:
			calls = true
		case kBulkMemory, kBulkTable, kMemoryGrow:
			p.hasBulk = true
		}
	}
	for i, in := range f.instrs {
		defines += uint64(in.defines)
		switch {
		case in.kind == kLoop:
			depth++
		case in.kind == kEnd && loopEnds[i]:
			depth--
		case depth == 0:
			p.entryCost++
		}
	}
	frame := min(uint64(slotBytes)*(uint64(f.params)+uint64(f.nLocals)+uint64(len(f.instrs))+defines)+frameBytes, 1<<31-1)
	rw.res.MaxFrame = max(rw.res.MaxFrame, uint32(frame))
	p.frame = uint32(min(frame, uint64(rw.opts.StackLimit)+1))
	p.leaf = !calls && len(loopEnds) == 0 && len(f.instrs) <= smallLeaf && frame <= smallLeafFrame
	if p.leaf {
		p.counted = false
	}
	p.foldAt = foldPoint(f.instrs)
	next := f.params + f.nLocals
	if (p.metered && (!p.leaf || p.hasBulk)) || p.counted {
		p.scratch, next = next, next+1
	}
	if p.metered && p.hasBulk {
		p.bulkLocal, next = next, next+1
	}
	p.newLocals = next - f.params - f.nLocals
	return p
}

// foldPoint returns the index of the loop that every call of the function reaches first, with
// only straight-line code before it, or -1.
func foldPoint(instrs []instr) int {
	for i, in := range instrs {
		switch in.kind {
		case kLoop:
			return i
		case kPlain, kBlock, kBulkMemory, kBulkTable, kMemoryGrow, kRefFunc:
			continue
		}
		return -1
	}
	return -1
}

// emit appends f's rewritten body to out.
func (rw *rewriter) emit(out []byte, f *function, typeIdx uint32) []byte {
	p := rw.planFunction(f)
	if p.newLocals == 0 {
		out = append(out, f.locals...)
	} else {
		out = appendU32(out, f.groups+1)
		out = append(out, f.locals[lebLen(f.locals):]...)
		out = appendU32(out, p.newLocals)
		out = append(out, 0x7f)
	}
	if p.counted {
		out = rw.appendStackPrologue(out, p)
	}
	if p.metered && !p.leaf && p.foldAt < 0 {
		out = rw.appendCharge(out, p.scratch, p.entryCost)
		rw.res.EntryCharges++
	}
	if p.counted {
		out = append(out, 0x02) // block: branches to the function's label now reach the epilogue
		out = append(out, rw.wrapTypes[typeIdx]...)
	}
	last := len(f.instrs) - 1
	for i, in := range f.instrs[:last] {
		switch in.kind {
		case kCall:
			if p.metered && in.idx < rw.funcImports {
				out = rw.appendCharge(out, p.scratch, hostCallCost)
				rw.res.HostCallCharges++
			}
			out = append(out, 0x10)
			out = appendU32(out, rw.shift(in.idx))
			continue
		case kRefFunc:
			out = append(out, 0xd2)
			out = appendU32(out, rw.shift(in.idx))
			continue
		case kReturn:
			if p.counted {
				out = rw.appendStackEpilogue(out, p)
			}
		case kBulkMemory, kBulkTable, kMemoryGrow:
			if p.metered {
				out = rw.appendBulkCharge(out, p, in.kind)
				rw.res.BulkCharges++
			}
		}
		out = append(out, f.body[in.start:in.end]...)
		if in.kind == kLoop && p.metered {
			cost := uint32(in.match - i)
			if i == p.foldAt {
				cost += p.entryCost
			}
			out = rw.appendCharge(out, p.scratch, cost)
			rw.res.Loops++
		}
	}
	if p.counted {
		out = append(out, 0x0b)
		out = rw.appendStackEpilogue(out, p)
	}
	return append(out, 0x0b)
}

// appendCharge appends: fuel -= cost; if fuel <= 0 { check(); fuel = budget }.
func (rw *rewriter) appendCharge(out []byte, scratch, cost uint32) []byte {
	out = append(out, 0x23)
	out = appendU32(out, rw.fuel)
	out = append(out, 0x41)
	out = appendS32(out, int32(min(cost, 1<<30)))
	out = append(out, 0x6b) // i32.sub
	return rw.appendRefill(out, scratch)
}

// appendRefill stores the new fuel (on the stack) and calls the check when it is used up.
func (rw *rewriter) appendRefill(out []byte, scratch uint32) []byte {
	out = append(out, 0x22) // local.tee
	out = appendU32(out, scratch)
	out = append(out, 0x24)
	out = appendU32(out, rw.fuel)
	out = append(out, 0x20)
	out = appendU32(out, scratch)
	out = append(out, 0x41, 0x00, 0x4c, 0x04, 0x40, 0x10) // i32.const 0, i32.le_s, if, call
	out = appendU32(out, rw.checkFunc)
	out = append(out, 0x41)
	out = appendS32(out, rw.opts.Budget)
	out = append(out, 0x24)
	out = appendU32(out, rw.fuel)
	return append(out, 0x0b)
}

// appendBulkCharge charges a bulk instruction by its size, the operand on top of the stack,
// which it leaves there.
func (rw *rewriter) appendBulkCharge(out []byte, p plan, kind instrKind) []byte {
	n := p.bulkLocal
	out = append(out, 0x22) // local.tee n
	out = appendU32(out, n)
	out = append(out, 0x23)
	out = appendU32(out, rw.fuel)
	out = append(out, 0x20)
	out = appendU32(out, n)
	switch kind {
	case kBulkMemory:
		out = append(out, 0x41, memoryShift, 0x76) // i32.shr_u
	case kBulkTable:
		out = append(out, 0x41, tableShift, 0x76)
	case kMemoryGrow: // min(n, 65536) << 12
		out = append(out, 0x41)
		out = appendS32(out, maxPages)
		out = append(out, 0x20)
		out = appendU32(out, n)
		out = append(out, 0x41)
		out = appendS32(out, maxPages)
		out = append(out, 0x49, 0x1b, 0x41, pageShift, 0x74) // i32.lt_u, select, i32.shl
	}
	out = append(out, 0x6b) // i32.sub
	return rw.appendRefill(out, p.scratch)
}

// appendStackPrologue appends: sp += frame; if sp > limit { stack() }.
func (rw *rewriter) appendStackPrologue(out []byte, p plan) []byte {
	out = append(out, 0x23)
	out = appendU32(out, rw.sp)
	out = append(out, 0x41)
	out = appendS32(out, int32(p.frame))
	out = append(out, 0x6a, 0x22) // i32.add, local.tee
	out = appendU32(out, p.scratch)
	out = append(out, 0x24)
	out = appendU32(out, rw.sp)
	out = append(out, 0x20)
	out = appendU32(out, p.scratch)
	out = append(out, 0x41)
	out = appendS32(out, int32(rw.opts.StackLimit))
	out = append(out, 0x4b, 0x04, 0x40, 0x10) // i32.gt_u, if, call
	out = appendU32(out, rw.stackFunc)
	return append(out, 0x0b)
}

// appendStackEpilogue appends: sp -= frame.
func (rw *rewriter) appendStackEpilogue(out []byte, p plan) []byte {
	out = append(out, 0x23)
	out = appendU32(out, rw.sp)
	out = append(out, 0x41)
	out = appendS32(out, int32(p.frame))
	out = append(out, 0x6b, 0x24)
	return appendU32(out, rw.sp)
}

// lebLen is the length of the LEB128 value at the start of b.
func lebLen(b []byte) int {
	for i, c := range b {
		if c&0x80 == 0 {
			return i + 1
		}
	}
	return len(b)
}
