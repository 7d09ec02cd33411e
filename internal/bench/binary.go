package bench

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// BinaryResult is what wasmkube's binary is made of.
type BinaryResult struct {
	FileMB     float64 // as `make build` writes it
	StrippedMB float64 // without symbol table and DWARF (what -ldflags='-s -w' removes)
	// SharedMB is what no symbol names (the pclntab, anonymous strings and function data,
	// section padding): spread over the parts in proportion to their code.
	SharedMB float64
	Parts    []BinaryPart
	// NoKubectlMB is the stripped size built with -tags nokubectl (0: not measured).
	NoKubectlMB float64
	// ExamplesMB is the size of the example modules embedded as files (in .rodata, named by no
	// symbol, so inside SharedMB).
	ExamplesMB float64
}

// BinaryPart is one group of packages.
type BinaryPart struct {
	Name string
	// CodeMB and DataMB are the sizes of its symbols in executable and in other sections.
	CodeMB, DataMB float64
	// EstimateMB is its share of the stripped binary: its symbols plus the shared part in
	// proportion to its code.
	EstimateMB float64
}

// binaryParts maps package path prefixes to the part they belong to, first match wins.
var binaryParts = []struct{ name, prefixes string }{
	{"built-in kubectl (k8s.io/kubectl, cli-runtime)", "k8s.io/kubectl/ k8s.io/cli-runtime/ k8s.io/kubernetes/pkg/kubectl"},
	{"kube-controller-manager and controllers", "k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/pkg/controller k8s.io/controller-manager k8s.io/cloud-provider"},
	{"kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/pkg/scheduler k8s.io/kube-scheduler"},
	{"simulated nodes (kwok's controllers and their template, jq and CEL helpers)", "sigs.k8s.io/kwok github.com/itchyny/ github.com/Masterminds/ github.com/wzshiming/ github.com/huandu/ github.com/shopspring/ github.com/spf13/cast github.com/mitchellh/copystructure github.com/mitchellh/reflectwalk"},
	{"kube-apiserver (k8s.io/kubernetes, apiserver, aggregator, apiextensions)", "k8s.io/kubernetes/ k8s.io/apiserver/ k8s.io/kube-aggregator/ k8s.io/apiextensions-apiserver/ k8s.io/kms"},
	{"API types, client-go, apimachinery", "k8s.io/api/ k8s.io/client-go/ k8s.io/apimachinery/ k8s.io/kube-openapi k8s.io/component-base k8s.io/component-helpers k8s.io/"},
	{"etcd (server and client)", "go.etcd.io/"},
	{"wazero", "github.com/tetratelabs/wazero"},
	{"OPA (Rego builtins and compiler)", "github.com/open-policy-agent/opa"},
	{"wasmkube's own packages", "github.com/wasmkube/wasmkube"},
	{"CEL, protobuf, gRPC, OpenTelemetry, Prometheus", "github.com/google/cel-go cel.dev/ google.golang.org/ go.opentelemetry.io/ github.com/prometheus/ github.com/gogo/"},
	{otherPart, ""},
	{stdPart, ""},
}

// measureBinary reads the sizes of the binary's sections and of its symbols by package.
func measureBinary(bin string) (*BinaryResult, error) {
	fi, err := os.Stat(bin)
	if err != nil {
		return nil, err
	}
	res := &BinaryResult{FileMB: mb(fi.Size())}
	dropped, err := strippedSections(bin)
	if err != nil {
		return nil, err
	}
	res.StrippedMB = mb(fi.Size() - dropped)
	code, data, err := symbolSizes(bin)
	if err != nil {
		return nil, err
	}
	var named, allCode int64
	for _, p := range binaryParts {
		named += code[p.name] + data[p.name]
		allCode += code[p.name]
	}
	res.SharedMB = res.StrippedMB - mb(named)
	for _, p := range binaryParts {
		part := BinaryPart{Name: p.name, CodeMB: mb(code[p.name]), DataMB: mb(data[p.name])}
		part.EstimateMB = part.CodeMB + part.DataMB + res.SharedMB*float64(code[p.name])/float64(allCode)
		res.Parts = append(res.Parts, part)
	}
	return res, nil
}

func mb(bytes int64) float64 { return float64(bytes) / 1e6 }

// strippedSections is the size of what -s -w leaves out: the symbol table and DWARF.
func strippedSections(bin string) (int64, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", bin, err)
	}
	defer f.Close()
	var n int64
	for _, s := range f.Sections {
		if s.Name == ".symtab" || s.Name == ".strtab" || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			n += int64(s.FileSize)
		}
	}
	return n, nil
}

// symbolSizes sums the sizes of the binary's symbols by part, from each symbol's package path,
// apart for code (executable sections) and data. Symbols in sections that take no room in the
// file (.bss, .noptrbss) and the linker's "local." copies of global symbols are left out.
func symbolSizes(bin string) (code, data map[string]int64, err error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", bin, err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return nil, nil, fmt.Errorf("symbols of %s (built with -ldflags=-s?): %w", bin, err)
	}
	code, data = map[string]int64{}, map[string]int64{}
	for _, sym := range syms {
		i := int(sym.Section)
		if i <= 0 || i >= len(f.Sections) || f.Sections[i].Type == elf.SHT_NOBITS || strings.HasPrefix(sym.Name, "local.") {
			continue
		}
		if f.Sections[i].Flags&elf.SHF_EXECINSTR != 0 {
			code[partOf(sym.Name)] += int64(sym.Size)
		} else {
			data[partOf(sym.Name)] += int64(sym.Size)
		}
	}
	return code, data, nil
}

// partOf names the part a symbol belongs to; symbols without a module path (the runtime and the
// standard library, linker tables) belong to "Go runtime and standard library".
func partOf(symbol string) string {
	symbol = strings.TrimPrefix(symbol, "type:")
	symbol = strings.TrimPrefix(symbol, "go:itab.")
	symbol = strings.TrimPrefix(symbol, ".eq.")
	symbol = strings.TrimLeft(symbol, "*")
	first, _, slash := strings.Cut(symbol, "/")
	if !slash || !strings.Contains(first, ".") || strings.HasPrefix(symbol, "go:") {
		return stdPart
	}
	for _, p := range binaryParts {
		for _, prefix := range strings.Fields(p.prefixes) {
			if strings.HasPrefix(symbol, prefix) {
				return p.name
			}
		}
	}
	return otherPart
}

const (
	otherPart = "other modules"
	stdPart   = "Go runtime, standard library, linker tables"
)

// sortParts orders parts by size, largest first.
func sortParts(parts []BinaryPart) {
	sort.SliceStable(parts, func(i, j int) bool { return parts[i].EstimateMB > parts[j].EstimateMB })
}

// buildStripped builds wasmkube stripped with the build tags given and returns its size in MB.
func buildStripped(ctx context.Context, root, dir string, tags ...string) (float64, error) {
	out := filepath.Join(dir, "wasmkube-stripped")
	args := []string{"-trimpath", "-ldflags=-s -w", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	if err := goBuild(ctx, root, append(args, "./cmd/wasmkube")...); err != nil {
		return 0, err
	}
	defer os.Remove(out)
	fi, err := os.Stat(out)
	if err != nil {
		return 0, err
	}
	return mb(fi.Size()), nil
}

// examplesMB is the size of the example modules the binary embeds (examples/*/*.wasm).
func examplesMB(root string) (float64, error) {
	files, err := filepath.Glob(filepath.Join(root, "examples", "*", "*.wasm"))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return 0, err
		}
		n += fi.Size()
	}
	return mb(n), nil
}
