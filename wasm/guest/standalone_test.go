package guest_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// policyMain is a tiny validating module, as a module author writes one in a repository of their
// own.
const policyMain = `package main

import (
	"strings"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/admission"
)

func init() {
	admission.Handle(guest.NoSettings, func(r *admission.Request, _ struct{}) admission.Response {
		if strings.HasPrefix(r.Name, "forbidden-") {
			return admission.Reject("names starting with forbidden- are not allowed", 403)
		}
		return admission.Accept()
	})
}

func main() {}
`

// TestStandaloneModule builds a module outside this repository, as an author does: its own
// go.mod requires the SDK (replaced by this checkout, as a published version would be fetched),
// `go mod tidy`, then a wasip1 build. The author's go.sum and module graph must not hold any
// Kubernetes module: the SDK is a Go module of its own, without requirements, so depending on
// it never pulls in the server's dependency tree (and needs no network).
func TestStandaloneModule(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH: cannot build a module outside this one")
	}
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	run := func(dir string, env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(gobin, args...)
		cmd.Dir, cmd.Env = dir, env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, stderr.Bytes())
		}
		return string(out)
	}

	// The module this package belongs to: its path and directory are what an author requires.
	sdk := strings.Fields(run(".", env, "list", "-m", "-f", "{{.Path}} {{.Dir}}"))
	if len(sdk) != 2 {
		t.Fatalf("go list -m: %q", sdk)
	}
	sdkPath, sdkDir := sdk[0], sdk[1]
	if sdkPath != "github.com/wasmkube/wasmkube/wasm/guest" {
		t.Errorf("the SDK is in module %s (%s), want its own module github.com/wasmkube/wasmkube/wasm/guest", sdkPath, sdkDir)
	}

	dir := t.TempDir()
	gomod := "module example.com/policy\n\ngo 1.24\n\n" +
		"require " + sdkPath + " v0.0.0-00010101000000-000000000000\n\n" +
		"replace " + sdkPath + " => " + sdkDir + "\n"
	for name, text := range map[string]string{"go.mod": gomod, "main.go": policyMain} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(dir, env, "mod", "tidy")
	wasmFile := filepath.Join(dir, "policy.wasm")
	run(dir, append(env, "GOOS=wasip1", "GOARCH=wasm"), "build", "-buildmode=c-shared", "-trimpath", "-o", wasmFile, ".")

	sum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if bytes.Contains(sum, []byte("k8s.io/")) {
		t.Errorf("the module's go.sum lists Kubernetes modules: depending on the SDK pulls in the server's dependency tree\n%s", sum)
	}
	for _, m := range strings.Fields(run(dir, env, "list", "-m", "-f", "{{.Path}}", "all")) {
		if m != "example.com/policy" && m != sdkPath {
			t.Errorf("module graph holds %s: the SDK should need no other module", m)
		}
	}
	bin, err := os.ReadFile(wasmFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(bin, []byte("\x00asm")) {
		t.Fatalf("%s is not a WebAssembly module (%d bytes)", wasmFile, len(bin))
	}
}
