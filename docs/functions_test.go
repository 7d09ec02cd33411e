package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFunctionLengths keeps the rule of docs/architecture.md's cut: no function over 60 lines
// outside the binary codec (wasm/internal/wasmbin, whose decoder and encoder are one switch over
// the instruction set each), and a median of at most 10 lines. Tests do not count.
func TestFunctionLengths(t *testing.T) {
	const maxLines, maxMedian = 60, 10
	fset := token.NewFileSet()
	var lengths []int
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		file, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		codec := strings.Contains(filepath.ToSlash(path), "wasm/internal/wasmbin/")
		for _, decl := range file.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1
			lengths = append(lengths, n)
			if n > maxLines && !codec {
				t.Errorf("%s: %s has %d lines, more than %d: cut it where it hides steps", fset.Position(fn.Pos()), fn.Name.Name, n, maxLines)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lengths)
	if median := lengths[len(lengths)/2]; median > maxMedian {
		t.Errorf("median function length %d lines, more than %d", median, maxMedian)
	}
	t.Logf("%d functions, median %d lines", len(lengths), lengths[len(lengths)/2])
}
