package kubewarden

import (
	"fmt"
	"math"
	"net"
	"regexp"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Builtins run in Go, outside the module's fuel meter and memory cap: a builtin whose output
// can be far larger than its input, or that reaches outside the process, would let a policy
// use the host's memory or files. Those that reach out are refused at load (refusedBuiltins);
// those whose output a call's arguments can blow up are checked before they run, here. OPA
// compiles most string and number builtins into the module itself (strings.replace, bits.lsh,
// numbers.range run in the guest's capped memory); these are the host's.

// maxBuiltinOutput is the most a guarded builtin may produce in one call.
const maxBuiltinOutput = 16 << 20

// builtinGuards check a builtin's arguments before it runs; an error stops the evaluation.
var builtinGuards = map[string]func(args []*ast.Term) error{
	"sprintf":                   guardSprintf,
	"regex.replace":             guardRegexReplace,
	"json.patch":                guardJSONPatch,
	"net.cidr_expand":           guardCIDRExpand,
	"numbers.range_step":        guardRangeStep,
	"json.marshal_with_options": guardMarshalOptions,
}

// sprintfWidth matches a verb's width and precision.
var sprintfWidth = regexp.MustCompile(`%[-+# 0]*(\*|\d*)(?:\.(\*|\d*))?`)

// guardSprintf refuses widths and precisions over 10000 and * widths (taken from the
// arguments): fmt pads without checking for cancellation.
func guardSprintf(args []*ast.Term) error {
	format, ok := args[0].Value.(ast.String)
	if !ok {
		return nil
	}
	for _, m := range sprintfWidth.FindAllStringSubmatch(string(format), -1) {
		for _, n := range m[1:] {
			if v, err := strconv.Atoi(n); n == "*" || (err == nil && v > 10000) {
				return fmt.Errorf("sprintf: width or precision %q: at most 10000, and not *", n)
			}
		}
	}
	return nil
}

// guardRegexReplace refuses a replacement whose output could pass maxBuiltinOutput: every
// position of s replaced by repl.
func guardRegexReplace(args []*ast.Term) error {
	s, ok1 := args[0].Value.(ast.String)
	repl, ok2 := args[2].Value.(ast.String)
	if ok1 && ok2 && len(s)+(len(s)+1)*len(repl) > maxBuiltinOutput {
		return fmt.Errorf("regex.replace: a %d-byte string with a %d-byte replacement could make more than %d bytes", len(s), len(repl), maxBuiltinOutput)
	}
	return nil
}

// guardJSONPatch refuses patches whose copy operations could pass maxBuiltinOutput: each may
// double the document.
func guardJSONPatch(args []*ast.Term) error {
	size := len(args[0].String())
	ops, _ := args[1].Value.(*ast.Array)
	for i := 0; ops != nil && i < ops.Len(); i++ {
		if obj, ok := ops.Elem(i).Value.(ast.Object); ok && ast.String("copy").Equal(valueOf(obj.Get(ast.StringTerm("op")))) {
			if size *= 2; size > maxBuiltinOutput {
				return fmt.Errorf("json.patch: its copy operations could make more than %d bytes", maxBuiltinOutput)
			}
		}
	}
	return nil
}

// valueOf is t's value, nil for no term.
func valueOf(t *ast.Term) ast.Value {
	if t == nil {
		return nil
	}
	return t.Value
}

// maxExpanded is the most elements a guarded builtin may make in one call.
const maxExpanded = 1 << 16

// guardCIDRExpand refuses a CIDR of more than maxExpanded addresses (an IPv6 /64 has 2^64).
func guardCIDRExpand(args []*ast.Term) error {
	s, ok := args[0].Value.(ast.String)
	if !ok {
		return nil
	}
	_, ipNet, err := net.ParseCIDR(string(s))
	if err != nil {
		return nil // the builtin's own error
	}
	ones, bits := ipNet.Mask.Size()
	if bits-ones > 16 {
		return fmt.Errorf("net.cidr_expand: %s has 2^%d addresses; at most %d", string(s), bits-ones, maxExpanded)
	}
	return nil
}

// guardRangeStep refuses a range of more than maxExpanded numbers.
func guardRangeStep(args []*ast.Term) error {
	lo, ok1 := args[0].Value.(ast.Number)
	hi, ok2 := args[1].Value.(ast.Number)
	step, ok3 := args[2].Value.(ast.Number)
	if !ok1 || !ok2 || !ok3 {
		return nil
	}
	l, _ := lo.Float64()
	h, _ := hi.Float64()
	st, _ := step.Float64()
	if st > 0 && math.Abs(h-l)/st > maxExpanded {
		return fmt.Errorf("numbers.range_step: %v numbers; at most %d", math.Abs(h-l)/st, maxExpanded)
	}
	return nil
}

// guardMarshalOptions refuses an indent or prefix over 64 bytes: they are repeated on every line
// and at every depth.
func guardMarshalOptions(args []*ast.Term) error {
	opts, ok := args[1].Value.(ast.Object)
	if !ok {
		return nil
	}
	for _, key := range []string{"indent", "prefix"} {
		if s, ok := valueOf(opts.Get(ast.StringTerm(key))).(ast.String); ok && len(s) > 64 {
			return fmt.Errorf("json.marshal_with_options: %s of %d bytes; at most 64", key, len(s))
		}
	}
	return nil
}
