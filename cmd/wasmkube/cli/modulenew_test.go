package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// module new makes a module that builds with standard Go and whose suite passes as written, for
// every hook and as a Kubewarden policy: the first steps a new author takes.
func TestModuleNewThenTest(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH")
	}
	for _, c := range []struct{ name, hook, kubewarden string }{
		{"forbid-keys", "validate", ""}, {"label-owner", "mutate", ""}, {"token-list", "authn", ""},
		{"readers", "authz", ""}, {"require-labels", "validate", "--kubewarden"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			dir := filepath.Join(t.TempDir(), c.name)
			args := []string{"module", "new", c.name, "--hook", c.hook, "--dir", dir}
			if c.kubewarden != "" {
				args = append(args, c.kubewarden)
			}
			code, out, stderr := e.run(args...)
			if code != 0 || !strings.Contains(out, "make test") {
				t.Fatalf("module new: %d\n%s\n%s", code, out, stderr)
			}
			wasm := filepath.Join(dir, c.name+".wasm")
			build := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s -w -buildid=", "-o", wasm, ".")
			build.Dir = dir
			build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=-mod=mod", "GOWORK=off", "GOPROXY=off")
			if b, err := build.CombinedOutput(); err != nil {
				t.Fatalf("the new module does not build offline: %v\n%s", err, b)
			}
			if c.kubewarden != "" {
				if code, _, stderr := e.run("module", "annotate", wasm, "-m", filepath.Join(dir, "metadata.yml"), "-o", wasm); code != 0 {
					t.Fatalf("annotate: %s", stderr)
				}
			}
			code, out, stderr = e.run("module", "test", filepath.Join(dir, "suite.yaml"))
			if code != 0 || !strings.Contains(out, " 0 failed") {
				t.Errorf("its suite: %d\n%s\n%s", code, out, stderr)
			}
		})
	}
}

func TestModuleNewRefuses(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	code, _, stderr := e.run("module", "new", "Bad_Name", "--hook", "validate", "--dir", filepath.Join(dir, "x"))
	if code == 0 || !strings.Contains(stderr, `module name "Bad_Name"`) {
		t.Errorf("bad name: %d %s", code, stderr)
	}
	writeFile(t, filepath.Join(dir, "taken", "main.go"), "package main\n")
	code, _, stderr = e.run("module", "new", "taken", "--hook", "validate", "--dir", filepath.Join(dir, "taken"))
	if code == 0 || !strings.Contains(stderr, "exists and is not empty") {
		t.Errorf("non-empty dir: %d %s", code, stderr)
	}
	code, out, _ := e.run("module", "new", "dry", "--hook", "authz", "--dir", filepath.Join(dir, "dry"), "--dry-run")
	if _, err := os.Stat(filepath.Join(dir, "dry")); code != 0 || err == nil || !strings.Contains(out, filepath.Join(dir, "dry", "sdk", "go.mod")) {
		t.Errorf("dry run wrote files or listed none: %d %v\n%s", code, err, out)
	}
}
