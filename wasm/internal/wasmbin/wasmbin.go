// Package wasmbin rewrites WebAssembly binaries for the host: it caps a module's memory and
// inserts a cheap deadline check at every loop header, so a module can be stopped at its timeout
// without wazero's close-on-context-done, which calls out to Go on every loop iteration.
//
// No maintained Go library parses and re-encodes WebAssembly code bodies (wazero's decoder is
// internal and has no encoder), so the walk over instructions is written here. It knows every
// opcode of WebAssembly 2.0 plus tail calls, exceptions, threads and SIMD; a module using
// anything else (for example the GC proposal) gets ErrUnsupported and the host falls back to
// close-on-context-done for it.
package wasmbin

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrUnsupported is returned for modules whose code this package cannot walk.
var ErrUnsupported = errors.New("unsupported WebAssembly feature")

var header = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}

// Section ids.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

// order is the position a section id takes in a module.
var order = map[byte]int{secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secTag: 6,
	secGlobal: 7, secExport: 8, secStart: 9, secElement: 10, secDataCount: 11, secCode: 12, secData: 13}

type section struct {
	id      byte
	name    string // custom sections
	content []byte
}

// Options say how to rewrite a module.
type Options struct {
	// CheckModule and CheckName name the imported host function, of type () -> (), that the
	// inserted code calls every Interval loop iterations. Empty: no loop checks.
	CheckModule, CheckName string
	// Interval is how many loop iterations pass between two calls of the check; at least 1.
	Interval int32
	// MaxMemoryPages, when non-zero, becomes the maximum of the module's memory (64 KiB pages).
	MaxMemoryPages uint32
}

// Result describes a rewritten module.
type Result struct {
	Binary []byte
	// Loops is the number of loop headers that got a check.
	Loops int
	// MinMemoryPages is the memory the module asks for at instantiation.
	MinMemoryPages uint32
}

// Rewrite applies opts to the module bin and returns the new binary. bin is not modified.
func Rewrite(bin []byte, opts Options) (*Result, error) {
	secs, err := splitSections(bin)
	if err != nil {
		return nil, err
	}
	rw := &rewriter{opts: opts, res: &Result{}}
	if opts.CheckName != "" {
		if opts.Interval < 1 {
			return nil, errors.New("interval must be at least 1")
		}
		if err := rw.prepare(secs); err != nil {
			return nil, err
		}
		secs = rw.ensureSections(secs)
	}
	out := append([]byte(nil), header...)
	for _, s := range secs {
		content, keep, err := rw.section(s)
		if err != nil {
			return nil, fmt.Errorf("section %d%s: %w", s.id, nameSuffix(s), err)
		}
		if !keep {
			continue
		}
		out = append(out, s.id)
		out = appendU32(out, uint32(len(content)))
		out = append(out, content...)
	}
	rw.res.Binary = out
	return rw.res, nil
}

func nameSuffix(s section) string {
	if s.id == secCustom {
		return " (" + s.name + ")"
	}
	return ""
}

func splitSections(bin []byte) ([]section, error) {
	if len(bin) < 8 || !bytes.Equal(bin[:8], header) {
		return nil, errors.New("not a WebAssembly 1.0 binary (bad magic or version)")
	}
	r := &reader{b: bin, pos: 8}
	var secs []section
	for !r.eof() {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		content, err := r.bytes(int(size))
		if err != nil {
			return nil, err
		}
		s := section{id: id, content: content}
		if id == secCustom {
			cr := &reader{b: content}
			n, err := cr.u32()
			if err != nil {
				return nil, err
			}
			name, err := cr.bytes(int(n))
			if err != nil {
				return nil, err
			}
			s.name = string(name)
		}
		secs = append(secs, s)
	}
	return secs, nil
}

// rewriter carries what the passes learn about the module.
type rewriter struct {
	opts Options
	res  *Result
	// funcImports is the number of imported functions: defined functions shift by one.
	funcImports uint32
	// checkType is the type index of () -> (), appended when absent (-1 until known).
	checkType   uint32
	appendType  bool
	checkFunc   uint32
	counter     uint32 // global index of the loop counter
	hasImports  bool
	hasGlobals  bool
	typeCount   uint32
	globalCount uint32 // imported + defined globals
}

func (rw *rewriter) checks() bool { return rw.opts.CheckName != "" }

// prepare reads the type, import and global sections to fix the new indices.
func (rw *rewriter) prepare(secs []section) error {
	found := false
	for _, s := range secs {
		switch s.id {
		case secType:
			n, idx, err := findEmptyFuncType(s.content)
			if err != nil {
				return err
			}
			rw.typeCount = n
			if idx >= 0 {
				rw.checkType, found = uint32(idx), true
			}
		case secImport:
			rw.hasImports = true
			funcs, globals, err := countImports(s.content)
			if err != nil {
				return err
			}
			rw.funcImports, rw.globalCount = funcs, rw.globalCount+globals
		case secGlobal:
			rw.hasGlobals = true
			n, err := (&reader{b: s.content}).u32()
			if err != nil {
				return err
			}
			rw.globalCount += n
		}
	}
	if !found {
		rw.checkType, rw.appendType = rw.typeCount, true
	}
	rw.checkFunc = rw.funcImports
	rw.counter = rw.globalCount
	return nil
}

// ensureSections adds empty type, import and global sections where the module has none, so the
// section pass can append to them.
func (rw *rewriter) ensureSections(secs []section) []section {
	need := map[byte]bool{secType: true, secImport: true, secGlobal: true}
	for _, s := range secs {
		delete(need, s.id)
	}
	for _, id := range []byte{secType, secImport, secGlobal} {
		if !need[id] {
			continue
		}
		// Before the first known section that comes later; custom sections may stand anywhere.
		i := len(secs)
		for j, s := range secs {
			if s.id != secCustom && order[s.id] > order[id] {
				i = j
				break
			}
		}
		secs = append(secs[:i], append([]section{{id: id, content: []byte{0x00}}}, secs[i:]...)...)
	}
	return secs
}

func (rw *rewriter) shift(idx uint32) uint32 {
	if rw.checks() && idx >= rw.funcImports {
		return idx + 1
	}
	return idx
}

// section rewrites one section; keep is false for sections to drop.
func (rw *rewriter) section(s section) (content []byte, keep bool, err error) {
	switch s.id {
	case secType:
		if rw.checks() && rw.appendType {
			return rw.appendEmptyType(s.content)
		}
	case secImport:
		return rw.imports(s.content)
	case secMemory:
		return rw.memories(s.content)
	case secGlobal:
		return rw.globals(s.content)
	case secExport:
		if rw.checks() {
			return rw.exports(s.content)
		}
	case secStart:
		if rw.checks() {
			r := &reader{b: s.content}
			idx, err := r.u32()
			if err != nil {
				return nil, false, err
			}
			return appendU32(nil, rw.shift(idx)), true, nil
		}
	case secElement:
		if rw.checks() {
			return rw.elements(s.content)
		}
	case secCode:
		if rw.checks() {
			return rw.code(s.content)
		}
	case secCustom:
		if rw.checks() {
			if bytes.HasPrefix([]byte(s.name), []byte(".debug_")) {
				return nil, false, nil // DWARF describes code offsets that moved
			}
			if s.name == "name" {
				return rw.names(s.content)
			}
		}
	}
	return s.content, true, nil
}
