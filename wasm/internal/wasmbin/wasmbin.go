// Package wasmbin rewrites WebAssembly binaries so that the host can bound what a module does:
// it caps memories and tables, meters the code so a call can be stopped at its deadline, and
// keeps an estimate of the call stack so that deep recursion stops before it costs the host more
// than a set amount of memory.
//
// # Metering
//
// Fuel is a module global that counts down. Every function entry is charged the number of
// instructions of the function that sit outside loops, and every loop header the number of
// instructions of the loop's body; memory.grow and the bulk memory and table instructions are
// charged by their size operand. When the fuel runs out the inserted code calls the host's check
// function (which may end the call) and refills it. A call of an imported (host) function pays a
// fixed cost, since host functions do far more than an instruction. Between two passes of a charge point, control
// only moves forward in a function, so every instruction executed was paid for: the guest does at
// most Budget instructions' worth of work between two checks, whatever it does (loops, recursion,
// mutual recursion through tables). Two shortcuts keep the cost down without breaking that bound:
// a function whose first executed instructions lead straight into a loop is charged at that
// loop's header instead of at its entry (standard Go's functions all start that way), and a small
// leaf function (no calls, no loops, at most smallLeaf instructions) is not charged at all, so a
// call instruction pays for at most smallLeaf+1 instructions.
//
// # The stack
//
// Each function adds an estimate of its frame to a second global at entry and takes it off when
// it returns; above StackLimit the inserted code calls the host's stack function, which ends the
// call. The estimate is an upper bound of what wazero's compiler puts on the stack: a 16-byte
// slot for every parameter, local and value the function can define, plus a fixed part.
//
// # Validity
//
// The rewrite appends types, globals, locals and imported functions. So that an invalid module
// never becomes valid by naming them, every type, global and local index the module uses is
// checked against what the module itself declares, and memory and table limits are checked
// before they are lowered; everything else about the module is left as it was, and wazero
// validates the result.
//
// No maintained Go library parses and re-encodes WebAssembly code bodies (wazero's decoder is
// internal and has no encoder), so the walk over instructions is written here. It knows every
// instruction of WebAssembly 2.0, the feature set wasmkube's runtime enables; a module using
// anything beyond it (tail calls, exceptions, threads, the GC proposal, memory64) is refused
// with ErrUnsupported.
package wasmbin

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrUnsupported is returned for modules that use WebAssembly features beyond 2.0.
var ErrUnsupported = errors.New("unsupported WebAssembly feature")

// ErrInvalid is returned for modules that are not valid WebAssembly as written.
var ErrInvalid = errors.New("invalid module")

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

// maxPages is the most pages a 32-bit memory can have.
const maxPages = 65536

type section struct {
	id      byte
	name    string // custom sections
	content []byte
}

// Options say how to rewrite a module. The zero value only checks the module and copies it.
type Options struct {
	// HostModule is the module the inserted function imports come from.
	HostModule string
	// CheckName names the host function, of type () -> (), called whenever Budget units of fuel
	// are used up. Empty: no metering.
	CheckName string
	// Budget is the fuel between two calls of the check function (about one instruction each);
	// at least 1 when CheckName is set.
	Budget int32
	// StackName names the host function, of type () -> (), called when the estimated stack
	// passes StackLimit bytes; it must not return normally. Empty: no stack accounting.
	StackName  string
	StackLimit uint32
	// MaxMemoryPages, when non-zero, becomes the maximum of the module's memory (64 KiB pages).
	MaxMemoryPages uint32
	// MaxTableElements, when non-zero, bounds the elements of all the module's tables together.
	MaxTableElements uint32
	// DefineMemory, when set, names a memory import (OPA's modules import env.memory) that
	// becomes a memory the module defines, with the import's limits (capped as any memory):
	// every instance then has a memory of its own, the host needs no module exporting one, and
	// the host functions reach it as the calling module's memory. A module without that import
	// is left as it is.
	DefineMemory *ImportName
	// ExportGlobals, when not empty, exports every mutable global the module defines (the
	// fuel and the stack estimate included) under this prefix and the global's index, so that
	// the host can save and restore them (see Result.ExportedGlobals).
	ExportGlobals string
}

// ImportName is an import's module and name.
type ImportName struct{ Module, Name string }

func (o Options) metered() bool      { return o.CheckName != "" }
func (o Options) stackCounted() bool { return o.StackName != "" }

// Result describes a rewritten module.
type Result struct {
	Binary []byte
	// Functions is the number of functions the module defines.
	Functions int
	// Loops is the number of loop headers that are charged.
	Loops int
	// EntryCharges is the number of functions charged at their entry (the others are charged
	// at their first loop or are small leaves).
	EntryCharges int
	// BulkCharges is the number of memory.grow and bulk memory or table instructions charged
	// by their size.
	BulkCharges int
	// HostCallCharges is the number of calls of imported functions, each charged a fixed cost.
	HostCallCharges int
	// MaxFrame is the largest frame estimate of a function, in bytes.
	MaxFrame uint32
	// MinMemoryPages is the memory the module asks for at instantiation.
	MinMemoryPages uint32
	// ExportedGlobals are the export names of the mutable globals (Options.ExportGlobals);
	// FuelGlobal is the name of the fuel among them (empty when not metered).
	ExportedGlobals []string
	FuelGlobal      string
	// DefinedMemory says the memory import Options.DefineMemory names became a defined memory.
	DefinedMemory bool
	// PrefixTaken says the module itself exports a name under Options.ExportGlobals; its
	// globals are then not exported.
	PrefixTaken bool
	// StateOutsideMemory says the module has state that neither its memory nor its own
	// globals hold: imported mutable globals, mutable v128 globals (a host reaches only their
	// low 64 bits), or code that changes tables (table.set, table.grow, table.fill, table.copy,
	// table.init) or drops segments (data.drop, elem.drop).
	StateOutsideMemory bool
}

// Rewrite applies opts to the module bin and returns the new binary. bin is not modified.
func Rewrite(bin []byte, opts Options) (*Result, error) {
	if opts.metered() && opts.Budget < 1 {
		return nil, errors.New("budget must be at least 1")
	}
	if opts.stackCounted() && (opts.StackLimit == 0 || opts.StackLimit > 1<<30) {
		return nil, errors.New("stack limit must be between 1 byte and 1 GiB")
	}
	if (opts.metered() || opts.stackCounted()) && opts.HostModule == "" {
		return nil, errors.New("the host module of the inserted imports is not named")
	}
	secs, err := splitSections(bin)
	if err != nil {
		return nil, err
	}
	rw := &rewriter{opts: opts, res: &Result{}}
	if err := rw.prepare(secs); err != nil {
		return nil, err
	}
	secs = rw.ensureSections(secs)
	out := append([]byte(nil), header...)
	for _, s := range secs {
		content, keep, err := rw.section(s)
		if err != nil {
			return nil, fmt.Errorf("section %s: %w", sectionName(s), err)
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

func sectionName(s section) string {
	names := map[byte]string{secType: "type", secImport: "import", secFunction: "function", secTable: "table",
		secMemory: "memory", secGlobal: "global", secExport: "export", secStart: "start", secElement: "element",
		secCode: "code", secData: "data", secDataCount: "data count", secTag: "tag"}
	if s.id == secCustom {
		return "custom (" + s.name + ")"
	}
	if n, ok := names[s.id]; ok {
		return n
	}
	return fmt.Sprintf("%d", s.id)
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
			// Valid WebAssembly, but wazero cannot read either as the module's last section:
			// refused, so that appending sections never turns them into something it reads.
			if len(name) == 0 || cr.eof() {
				return nil, fmt.Errorf("%w: a custom section without a name or content", ErrInvalid)
			}
			s.name = string(name)
		} else if _, known := order[id]; !known {
			return nil, fmt.Errorf("%w: unknown section id %d", ErrInvalid, id)
		}
		secs = append(secs, s)
	}
	return secs, nil
}

// ensureSections adds empty type, import, memory and global sections where the module has none
// and the rewrite adds to them, so the section pass can append.
func (rw *rewriter) ensureSections(secs []section) []section {
	need := map[byte]bool{}
	if rw.added > 0 {
		need[secType], need[secImport], need[secGlobal] = true, true, true
	}
	if rw.res.DefinedMemory {
		need[secMemory] = true
	}
	for _, s := range secs {
		delete(need, s.id)
	}
	for _, id := range []byte{secType, secImport, secMemory, secGlobal} {
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

// section rewrites one section; keep is false for sections to drop.
func (rw *rewriter) section(s section) (content []byte, keep bool, err error) {
	switch s.id {
	case secType:
		return rw.typeSection(s.content)
	case secImport:
		return rw.imports(s.content)
	case secTable:
		return rw.tableSection(s.content)
	case secMemory:
		return rw.memories(s.content)
	case secGlobal:
		return rw.globalSection(s.content)
	case secExport:
		return rw.exports(s.content)
	case secStart:
		r := &reader{b: s.content}
		idx, err := r.u32()
		if err != nil {
			return nil, false, err
		}
		return appendU32(nil, rw.shift(idx)), true, r.end()
	case secElement:
		return rw.elements(s.content)
	case secCode:
		return rw.code(s.content)
	case secData:
		return rw.data(s.content)
	case secTag:
		return nil, false, fmt.Errorf("%w: exception tags", ErrUnsupported)
	case secCustom:
		if rw.added > 0 {
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
