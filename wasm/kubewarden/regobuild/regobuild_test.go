package regobuild_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmkube/wasmkube/wasm/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/kubewarden/regobuild"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestBuild: the module is annotated, the same wherever it is built from (file names in it are
// relative to the files' common directory), and files in two directories compile together.
func TestBuild(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "p", "policy.rego"), "package policy\n\nimport data.helper\n\nviolation contains {\"msg\": helper.msg} if input.review.name == \"x\"\n")
	write(t, filepath.Join(dir, "lib", "helper.rego"), "package helper\n\nmsg := \"no x\"\n")
	md := &kubewarden.Metadata{ExecutionMode: kubewarden.ModeGatekeeper}
	opts := regobuild.Options{Paths: []string{filepath.Join(dir, "p"), filepath.Join(dir, "lib", "helper.rego")}, Entrypoints: []string{"policy/violation"}, Metadata: md}
	a, err := regobuild.Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	got, found, err := kubewarden.ReadMetadata(a)
	if err != nil || !found || got.ExecutionMode != kubewarden.ModeGatekeeper || got.PolicyType != "kubernetes" {
		t.Fatalf("metadata: %+v %v %v", got, found, err)
	}
	t.Chdir(filepath.Join(dir, "p"))
	opts.Paths = []string{".", "../lib/helper.rego"}
	b, err := regobuild.Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("built from another directory, the module differs")
	}
	if bytes.Contains(a, []byte(dir)) {
		t.Error("the module holds the absolute path of its sources")
	}
}

// TestBuildErrors name what is wrong.
func TestBuildErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "bad.rego"), "package policy\n\nviolation contains msg if {\n")
	write(t, filepath.Join(dir, "ok.rego"), "package policy\n\nallow := true\n")
	for _, c := range []struct {
		opts regobuild.Options
		want string
	}{
		{regobuild.Options{}, "no .rego files to compile"},
		{regobuild.Options{Paths: []string{filepath.Join(dir, "bad.rego")}, Entrypoints: []string{"policy/violation"}}, "bad.rego:"},
		{regobuild.Options{Paths: []string{filepath.Join(dir, "missing.rego")}}, "missing.rego"},
		{regobuild.Options{Paths: []string{filepath.Join(dir, "ok.rego")}}, "entrypoint"},
		{regobuild.Options{Paths: []string{filepath.Join(dir, "ok.rego")}, Entrypoints: []string{"policy/allow"}, Metadata: &kubewarden.Metadata{ExecutionMode: kubewarden.ModeWASI}}, `executionMode "wasi": a Rego policy runs as opa or gatekeeper`},
	} {
		_, err := regobuild.Build(context.Background(), c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.opts, err, c.want)
		}
	}
}
