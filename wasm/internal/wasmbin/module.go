package wasmbin

import (
	"bytes"
	"fmt"
)

// funcType is a function type's parameter and result types, one byte each (WebAssembly 2.0
// value types).
type funcType struct {
	params, results []byte
}

// rewriter carries what the first pass learns about the module and what the rewrite adds.
type rewriter struct {
	opts Options
	res  *Result

	types       []funcType
	funcTypes   []uint32 // type index of every function: imported, then defined
	funcImports uint32
	globals     uint32 // imported + defined
	tables      []limits

	// added is the number of imported host functions the rewrite adds; they take the indices
	// funcImports, funcImports+1…, so every defined function shifts by added.
	added     uint32
	checkFunc uint32 // function index of the check import
	stackFunc uint32 // function index of the stack import
	emptyType uint32 // type index of () -> ()
	// newTypes are the types the rewrite appends: () -> () if the module has none, and the
	// [] -> results types of the blocks that wrap function bodies.
	newTypes []funcType
	// wrapTypes maps a function type index to the block type that wraps its body.
	wrapTypes map[uint32][]byte
	fuel, sp  uint32 // global indices of the fuel and the stack estimate
	// mutable are the indices of the mutable globals the module defines (the added ones too).
	mutable []uint32
	// memory is the limits of the memory import that becomes a definition (DefineMemory).
	memory limits
}

// prepare reads the sections that fix the indices of what the rewrite adds, and checks the
// declarations the rewrite touches.
func (rw *rewriter) prepare(secs []section) error {
	seen := map[byte]bool{}
	for _, s := range secs {
		if s.id != secCustom {
			if seen[s.id] {
				return fmt.Errorf("%w: two %s sections", ErrInvalid, sectionName(s))
			}
			seen[s.id] = true
		}
		var err error
		switch s.id {
		case secType:
			err = rw.readTypes(s.content)
		case secImport:
			err = rw.readImports(s.content)
		case secFunction:
			err = rw.readFunctions(s.content)
		case secTable:
			err = rw.readTables(s.content)
		case secGlobal:
			var n uint32
			n, err = (&reader{b: s.content}).u32()
			rw.globals += n
		}
		if err != nil {
			return fmt.Errorf("section %s: %w", sectionName(s), err)
		}
	}
	if rw.res.DefinedMemory && seen[secMemory] {
		return fmt.Errorf("%w: a memory import beside a memory section (multiple memories)", ErrUnsupported)
	}
	rw.res.Functions = len(rw.funcTypes) - int(rw.funcImports)
	if err := rw.checkTableBudget(); err != nil {
		return err
	}
	if !rw.opts.metered() && !rw.opts.stackCounted() {
		return nil
	}
	rw.emptyType = rw.typeIndex(funcType{})
	next := rw.funcImports
	if rw.opts.metered() {
		rw.checkFunc, next = next, next+1
	}
	if rw.opts.stackCounted() {
		rw.stackFunc, next = next, next+1
		rw.wrapTypes = map[uint32][]byte{}
		for _, t := range rw.funcTypes[rw.funcImports:] {
			rw.wrapType(t)
		}
	}
	rw.added = next - rw.funcImports
	rw.fuel, rw.sp = rw.globals, rw.globals+1
	return nil
}

// typeIndex returns the index of a type equal to t, appending one when there is none.
func (rw *rewriter) typeIndex(t funcType) uint32 {
	all := append(append([]funcType(nil), rw.types...), rw.newTypes...)
	for i, have := range all {
		if bytes.Equal(have.params, t.params) && bytes.Equal(have.results, t.results) {
			return uint32(i)
		}
	}
	rw.newTypes = append(rw.newTypes, t)
	return uint32(len(all))
}

// wrapType records the block type of a body of type t: no results, one value type, or the index
// of a type without parameters and with t's results.
func (rw *rewriter) wrapType(t uint32) {
	if _, ok := rw.wrapTypes[t]; ok {
		return
	}
	results := rw.types[t].results
	switch len(results) {
	case 0:
		rw.wrapTypes[t] = []byte{0x40}
	case 1:
		rw.wrapTypes[t] = []byte{results[0]}
	default:
		rw.wrapTypes[t] = appendS33(nil, rw.typeIndex(funcType{results: results}))
	}
}

func (rw *rewriter) readTypes(content []byte) error {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			return fmt.Errorf("%w: type form 0x%02x (GC types)", ErrUnsupported, form)
		}
		var t funcType
		if t.params, err = readValTypes(r); err != nil {
			return err
		}
		if t.results, err = readValTypes(r); err != nil {
			return err
		}
		rw.types = append(rw.types, t)
	}
	return r.end()
}

func (rw *rewriter) checkType(idx uint32) error {
	if idx >= uint32(len(rw.types)) {
		return fmt.Errorf("%w: type index %d out of range (the module declares %d types)", ErrInvalid, idx, len(rw.types))
	}
	return nil
}

func (rw *rewriter) readImports(content []byte) error {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		imp, err := readImport(r)
		if err != nil {
			return err
		}
		switch imp.kind {
		case 0x00:
			if err := rw.checkType(imp.typeIdx); err != nil {
				return err
			}
			rw.funcTypes = append(rw.funcTypes, imp.typeIdx)
			rw.funcImports++
		case 0x01:
			rw.tables = append(rw.tables, imp.limits)
		case 0x02:
			rw.res.DefinedMemory = rw.res.DefinedMemory || rw.definesMemory(imp)
		case 0x03:
			rw.globals++
			rw.res.StateOutsideMemory = rw.res.StateOutsideMemory || imp.mutable
		}
	}
	return r.end()
}

// definesMemory says imp is the memory import that Options.DefineMemory turns into a definition.
func (rw *rewriter) definesMemory(imp importDesc) bool {
	d := rw.opts.DefineMemory
	return d != nil && imp.kind == 0x02 && imp.module == d.Module && imp.name == d.Name
}

func (rw *rewriter) readFunctions(content []byte) error {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		t, err := r.u32()
		if err != nil {
			return err
		}
		if err := rw.checkType(t); err != nil {
			return fmt.Errorf("function %d: %w", i, err)
		}
		rw.funcTypes = append(rw.funcTypes, t)
	}
	return r.end()
}

func (rw *rewriter) readTables(content []byte) error {
	r := &reader{b: content}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if _, err := readRefType(r); err != nil {
			return err
		}
		l, err := readLimits(r)
		if err != nil {
			return err
		}
		rw.tables = append(rw.tables, l)
	}
	return r.end()
}

// shift maps a function index of the module to its index after the inserted imports.
func (rw *rewriter) shift(idx uint32) uint32 {
	if idx >= rw.funcImports {
		return idx + rw.added
	}
	return idx
}

func (rw *rewriter) checkGlobal(idx uint32) error {
	if idx >= rw.globals {
		return fmt.Errorf("%w: global index %d out of range (the module declares %d globals)", ErrInvalid, idx, rw.globals)
	}
	return nil
}
