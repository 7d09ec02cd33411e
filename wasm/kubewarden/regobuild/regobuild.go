// Package regobuild compiles Rego policies to WebAssembly modules of OPA's wasm ABI, annotated
// as Kubewarden policies of execution mode opa or gatekeeper, as `opa build -t wasm` followed by
// `kwctl annotate` would: offline, in pure Go, with OPA's own compiler.
package regobuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/compile"

	"github.com/wasmkube/wasmkube/wasm/kubewarden"
)

// Options says what to compile.
type Options struct {
	// Paths are .rego files or directories holding them (data.json/yaml files are compiled in
	// as static data).
	Paths []string
	// Entrypoints are the rules to compile, as "package/path/rule" (data.package.path.rule),
	// beside those the Rego marks with a METADATA annotation "entrypoint: true". The first is
	// the one an OPA-mode policy evaluates unless its profile entry names another; a
	// Gatekeeper-mode policy evaluates the one named violation.
	Entrypoints []string
	// RegoV0 reads the Rego of OPA before 1.0 (no "if"/"contains" keywords required).
	RegoV0 bool
	// Metadata annotates the module (Kubewarden's metadata); its execution mode must be opa or
	// gatekeeper. Nil: opa with no rules.
	Metadata *kubewarden.Metadata
}

// Build compiles opts.Paths to one wasm module and annotates it with opts.Metadata.
func Build(ctx context.Context, opts Options) ([]byte, error) {
	md, err := metadata(opts)
	if err != nil {
		return nil, err
	}
	root, rel, err := relativePaths(opts.Paths)
	if err != nil {
		return nil, err
	}
	c := compile.New().
		WithTarget(compile.TargetWasm).
		WithEntrypoints(opts.Entrypoints...).
		WithRegoAnnotationEntrypoints(true).
		WithFS(os.DirFS(root)).
		WithPaths(rel...).
		WithEnablePrintStatements(true)
	if opts.RegoV0 {
		c = c.WithRegoVersion(ast.RegoV0)
	}
	if err := c.Build(ctx); err != nil {
		return nil, fmt.Errorf("compile %s: %w", strings.Join(opts.Paths, ", "), err)
	}
	mods := c.Bundle().WasmModules
	if len(mods) != 1 {
		return nil, fmt.Errorf("compile %s: the compiler made %d wasm modules, want 1", strings.Join(opts.Paths, ", "), len(mods))
	}
	return kubewarden.Annotate(mods[0].Raw, md)
}

// relativePaths returns the directory that holds every path and the paths relative to it: the
// compiler writes file names into the module (in error locations), which must not depend on
// where the build ran.
func relativePaths(paths []string) (root string, rel []string, err error) {
	abs := make([]string, len(paths))
	for i, p := range paths {
		dir := ""
		if abs[i], dir, err = dirOf(p); err != nil {
			return "", nil, err
		}
		root = commonDir(root, dir)
	}
	rel = make([]string, len(abs))
	for i, a := range abs {
		r, err := filepath.Rel(root, a)
		if err != nil {
			return "", nil, err
		}
		rel[i] = filepath.ToSlash(r)
	}
	return root, rel, nil
}

// dirOf returns path made absolute, and the directory it is or is in.
func dirOf(path string) (abs, dir string, err error) {
	if abs, err = filepath.Abs(path); err != nil {
		return "", "", err
	}
	fi, err := os.Stat(abs)
	if err != nil || fi.IsDir() {
		return abs, abs, err
	}
	return abs, filepath.Dir(abs), nil
}

// commonDir is the closest directory that holds both root ("" for none yet) and dir.
func commonDir(root, dir string) string {
	sep := string(filepath.Separator)
	for root != "" && root != dir && !strings.HasPrefix(dir, strings.TrimSuffix(root, sep)+sep) {
		root = filepath.Dir(root)
	}
	if root == "" {
		return dir
	}
	return root
}

// metadata checks opts and returns the metadata to annotate with.
func metadata(opts Options) (*kubewarden.Metadata, error) {
	if len(opts.Paths) == 0 {
		return nil, errors.New("no .rego files to compile")
	}
	md := kubewarden.Metadata{ExecutionMode: kubewarden.ModeOPA}
	if opts.Metadata != nil {
		md = *opts.Metadata
	}
	switch md.ExecutionMode {
	case "":
		md.ExecutionMode = kubewarden.ModeOPA
	case kubewarden.ModeOPA, kubewarden.ModeGatekeeper:
	default:
		return nil, fmt.Errorf("executionMode %q: a Rego policy runs as opa or gatekeeper", md.ExecutionMode)
	}
	if md.PolicyType == "" {
		md.PolicyType = "kubernetes"
	}
	return &md, nil
}
