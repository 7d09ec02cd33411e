package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestModuleRunInspectBench(t *testing.T) {
	e := newEnv(t)
	ex := func(p string) string { return filepath.Join("..", "..", "..", "examples", p) }
	code, out, stderr := e.run("module", "run", ex("magic-validate/magic-validate.wasm"), "--hook", "validate", "--request", ex("magic-validate/request.yaml"))
	if code != 0 || !strings.Contains(out, `decision: denied (HTTP 400): admission WASM module "magic-validate" denied the request: value 'not-allowed-value' not allowed in configmap`) {
		t.Errorf("run magic-validate: %d\n%s\n%s", code, out, stderr)
	}
	code, out, stderr = e.run("module", "run", ex("magic-mutate/magic-mutate.wasm"), "--hook", "validate", "--mutating", "--request", ex("magic-mutate/request.yaml"))
	if code != 0 || !strings.Contains(out, `patch (JSONPatch): [{"op":"add","path":"/data/magic-value","value":"foobar"}]`) {
		t.Errorf("run magic-mutate: %d\n%s\n%s", code, out, stderr)
	}
	code, out, _ = e.run("module", "run", ex("hmac-authn/hmac-authn.wasm"), "--hook", "authn",
		"--request", ex("hmac-authn/request.yaml"), "--settings", ex("hmac-authn/settings.yaml"))
	if code != 0 || !strings.Contains(out, `authenticated as "alice"`) || strings.Contains(out, "v1.") {
		t.Errorf("run hmac-authn (and the token must not be echoed): %d\n%s", code, out)
	}
	code, _, stderr = e.run("module", "run", ex("magic-validate/magic-validate.wasm"), "--hook", "authn", "--request", ex("magic-authn/request.yaml"))
	if code == 0 || !strings.Contains(stderr, "missing function 'authn' in module 'magic-validate'") {
		t.Errorf("wrong hook: %d %s", code, stderr)
	}
	if entries, err := os.ReadDir(filepath.Join(e.root, "cache", "wasmkube", "modules")); err != nil || len(entries) == 0 {
		t.Errorf("no compilation cache under XDG_CACHE_HOME: %v", err)
	}

	code, out, _ = e.run("module", "inspect", ex("magic-authz/magic-authz.wasm"))
	for _, want := range []string{"abi:", "the original module ABI): authz", "export:", "authz() -> ()", "sandbox:", "metered:", "import:"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q: %d\n%s", want, code, out)
		}
	}
	code, out, stderr = e.run("module", "bench", ex("magic-validate/magic-validate.wasm"), "--hook", "validate", "--request", ex("magic-validate/request.yaml"), "--calls", "100")
	if code != 0 || !strings.Contains(out, "pooled") || !strings.Contains(out, "fresh") || !strings.Contains(out, "faster than fresh") {
		t.Errorf("bench: %d\n%s\n%s", code, out, stderr)
	}
}

// TestModuleKubewarden: `module run --type kubewarden` runs policies as their READMEs say, and
// `module annotate` writes metadata that `module run` then follows.
func TestModuleKubewarden(t *testing.T) {
	e := newEnv(t)
	ex := func(p string) string { return filepath.Join("..", "..", "..", "examples", p) }
	run := func(name string, extra ...string) (int, string, string) {
		args := append([]string{"module", "run", ex(name + "/" + name + ".wasm"), "--type", "kubewarden", "--hook", "validate", "--request", ex(name + "/request.yaml")}, extra...)
		return e.run(args...)
	}
	code, out, stderr := run("safe-annotations", "--settings", ex("safe-annotations/settings.yaml"))
	if code != 0 || !strings.Contains(out, "policy: safe-annotations (kubewarden-wapc, mutating false), settings valid") ||
		!strings.Contains(out, `decision: denied (HTTP 403): admission WASM module "safe-annotations" denied the request: ConfigMap demo: missing mandatory annotations: owner`) {
		t.Errorf("safe-annotations: %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = run("default-labels", "--settings", ex("default-labels/settings.yaml"))
	if code != 0 || !strings.Contains(out, `patch (JSONPatch): [{"op":"add","path":"/metadata/labels","value":{"cost-center":"42","owner":"platform"}}]`) {
		t.Errorf("default-labels: %d\n%s%s", code, out, stderr)
	}
	// Rego, both modes, as kwctl run runs them.
	code, out, stderr = run("required-labels", "--settings", ex("required-labels/settings.yaml"))
	if code != 0 || !strings.Contains(out, "policy: required-labels (gatekeeper, mutating false)") ||
		!strings.Contains(out, "rego: entrypoint policy/violation, builtins on the host: sprintf") ||
		!strings.Contains(out, `decision: denied (HTTP 400): admission WASM module "required-labels" denied the request: Namespace team-a has no label "owner", Namespace team-a: label env=test is not one of ["dev", "staging", "prod"]`) {
		t.Errorf("required-labels: %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = run("no-latest-tag", "--settings", ex("no-latest-tag/settings.yaml"))
	if code != 0 || !strings.Contains(out, "policy: no-latest-tag (opa, mutating false)") ||
		!strings.Contains(out, `decision: denied (HTTP 400): admission WASM module "no-latest-tag" denied the request: container nginx: image nginx has no tag or the tag latest`) {
		t.Errorf("no-latest-tag: %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = run("no-latest-tag", "--entrypoint", "kubernetes/admission/nope")
	if code == 0 || !strings.Contains(stderr, `no entrypoint "kubernetes/admission/nope"; it has kubernetes/admission/main`) {
		t.Errorf("unknown entrypoint: %d\n%s%s", code, out, stderr)
	}
	dir := t.TempDir()
	code, out, stderr = e.run("module", "build-rego", ex("required-labels/policy.rego"), "-m", ex("required-labels/metadata.yml"), "-o", filepath.Join(dir, "rl.wasm"))
	if built, _ := os.ReadFile(filepath.Join(dir, "rl.wasm")); code != 0 || !bytes.Equal(built, mustRead(t, ex("required-labels/required-labels.wasm"))) {
		t.Errorf("build-rego: %d, not the committed module\n%s%s", code, out, stderr)
	}
	code, out, _ = e.run("module", "inspect", filepath.Join(dir, "rl.wasm"))
	if code != 0 || !strings.Contains(out, "OPA wasm ABI") || !strings.Contains(out, "policy/violation") {
		t.Errorf("inspect a Rego policy: %d\n%s", code, out)
	}
	// A policy gets nothing but what it is granted, offline too.
	code, out, stderr = run("unique-ingress-host")
	if code != 0 || !strings.Contains(out, "policy: unique-ingress-host (wasi, mutating false)") ||
		!strings.Contains(out, "note: its metadata asks for contextAwareResources networking.k8s.io/v1 Ingress; not granted (--allow-context-aware grants it)") ||
		!strings.Contains(out, "kubernetes/list_resources_all is not granted to policy unique-ingress-host (grants.contextAwareResources") {
		t.Errorf("unique-ingress-host: %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = run("unique-ingress-host", "--allow-context-aware")
	if code != 0 || strings.Contains(out, "note:") || !strings.Contains(out, "kubernetes host calls are not available here (no cluster)") {
		t.Errorf("unique-ingress-host --allow-context-aware: %d\n%s%s", code, out, stderr)
	}
	code, _, stderr = run("default-labels")
	if code == 0 || !strings.Contains(stderr, `policy "default-labels": settings are invalid: settings.labels names no label to add`) {
		t.Errorf("default-labels without settings: %d %s", code, stderr)
	}

	code, out, stderr = e.run("module", "bench", ex("safe-annotations/safe-annotations.wasm"), "--type", "kubewarden", "--hook", "validate",
		"--request", ex("safe-annotations/request.yaml"), "--settings", ex("safe-annotations/settings.yaml"), "--calls", "100")
	if code != 0 || !strings.Contains(out, "pooled     100") || !strings.Contains(out, "fresh      5") {
		t.Errorf("bench: %d\n%s%s", code, out, stderr)
	}

	// annotate: the same policy, now claiming to be a WASI command, no longer loads as one.
	md := filepath.Join(e.root, "metadata.yml")
	if err := os.WriteFile(md, []byte("executionMode: wasi\nrules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	annotated := filepath.Join(e.root, "annotated.wasm")
	code, out, stderr = e.run("module", "annotate", ex("safe-annotations/safe-annotations.wasm"), "-m", md, "-o", annotated)
	if code != 0 || !strings.Contains(out, "wrote "+annotated) {
		t.Fatalf("annotate: %d %s %s", code, out, stderr)
	}
	code, _, stderr = e.run("module", "run", annotated, "--type", "kubewarden", "--hook", "validate", "--request", ex("safe-annotations/request.yaml"))
	if code == 0 || !strings.Contains(stderr, "missing function '_start'") {
		t.Errorf("run of the re-annotated policy: %d %s", code, stderr)
	}
	code, out, _ = e.run("module", "inspect", annotated)
	if code != 0 || !strings.Contains(out, "io.kubewarden.metadata") || !strings.Contains(out, "wasi, mutating false, 0 rules") {
		t.Errorf("inspect: %s", out)
	}
	code, out, _ = e.run("module", "inspect", ex("unique-ingress-host/unique-ingress-host.wasm"))
	if code != 0 || !strings.Contains(out, "networking.k8s.io/v1 Ingress") || !strings.Contains(out, "[CREATE UPDATE] [networking.k8s.io]/[v1] [ingresses]") {
		t.Errorf("inspect unique-ingress-host: %s", out)
	}
	if err := os.WriteFile(md, []byte("executionMode: wasm\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = e.run("module", "annotate", ex("safe-annotations/safe-annotations.wasm"), "-m", md, "-o", annotated)
	if code == 0 || !strings.Contains(stderr, "metadata.yml") || !strings.Contains(stderr, "executionMode") {
		t.Errorf("bad metadata: %d %s", code, stderr)
	}
}

// TestModuleRunStopsHostileModules: `module run` ends a module that recurses without loops at
// its timeout, and at once on SIGTERM.
func TestModuleRunStopsHostileModules(t *testing.T) {
	e := newEnv(t)
	recursion := filepath.Join("..", "..", "..", "wasm", "testdata", "hostile", "recursion.wasm")
	request := filepath.Join("..", "..", "..", "examples", "magic-validate", "request.yaml")
	began := time.Now()
	code, _, stderr := e.run("module", "run", recursion, "--hook", "validate", "--request", request, "--timeout", "1s")
	if code == 0 || !strings.Contains(stderr, "timeout: stopped after the call's deadline (timeout 1s)") {
		t.Errorf("recursion under --timeout 1s: %d %s", code, stderr)
	}
	t.Logf("ended after %s", time.Since(began).Round(time.Millisecond))

	cmd := e.command(context.Background(), "module", "run", recursion, "--hook", "validate", "--request", request, "--timeout", "30s")
	var errOut strings.Builder
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // compiled, running
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(errOut.String(), "caller canceled the call") {
			t.Errorf("after SIGTERM: %v %s", err, errOut.String())
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("module run ignored SIGTERM for 10s:\n%s", errOut.String())
	}
}

// TestModuleRunRedactsToken: `module run --hook authn` never prints the token it sends, even
// when the module echoes it into its error and stderr; a failing admission module's stderr is
// shown (there is no other client to keep it from).
func TestModuleRunRedactsToken(t *testing.T) {
	e := newEnv(t)
	faults := filepath.Join(e.root, "faults.wasm")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", faults, "../../../wasm/testdata/faults")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build faults: %v\n%s", err, b)
	}
	const token = "cli-canary-token-81c3"
	write := func(name, doc string) string {
		p := filepath.Join(e.root, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	request := write("review.yaml", "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec: {token: "+token+"}\n")
	for _, mode := range []string{"echo-token", "echo-token-exit"} {
		settings := write(mode+".yaml", "mode: "+mode+"\n")
		code, out, stderr := e.run("module", "run", faults, "--hook", "authn", "--request", request, "--settings", settings)
		if code == 0 || strings.Contains(out+stderr, token) || !strings.Contains(stderr, "<redacted>") {
			t.Errorf("%s: %d, the token must be redacted:\n%s%s", mode, code, out, stderr)
		}
	}
	review := write("admission.yaml", "apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\nrequest: {uid: u, operation: CREATE}\n")
	code, _, stderr := e.run("module", "run", faults, "--hook", "validate", "--request", review, "--settings", write("exit3.yaml", "mode: exit3\n"))
	if code == 0 || !strings.Contains(stderr, "exited with code 3; stderr: exiting with 3") {
		t.Errorf("an admission failure's stderr: %d %s", code, stderr)
	}
}

// module test: a passing suite exits 0 with a summary; a failing case exits 1 and says why; a
// suite with an unknown field is an error naming the file and line.
func TestModuleTest(t *testing.T) {
	e := newEnv(t)
	ex := func(p string) string { return filepath.Join("..", "..", "..", "examples", p) }
	code, out, stderr := e.run("module", "test", ex("magic-validate/suite.yaml"), ex("magic-authz/suite.yaml"))
	if code != 0 || !strings.Contains(out, "ok   rejects a ConfigMap whose data has the key not-allowed-value") ||
		!strings.Contains(out, "2 suites, 9 cases: 9 passed, 0 failed") {
		t.Errorf("passing suites: %d\n%s\n%s", code, out, stderr)
	}
	code, out, _ = e.run("module", "test", "--run", "^an update", ex("magic-validate/suite.yaml"))
	if code != 0 || !strings.Contains(out, "ok   an update that adds the key is rejected") || !strings.Contains(out, "1 suites, 1 cases: 1 passed") {
		t.Errorf("--run: %d\n%s", code, out)
	}
	code, out, stderr = e.run("module", "test", "--run", "no-such-case", ex("magic-validate/suite.yaml"))
	if code != 1 || !strings.Contains(stderr, `no case matches --run "no-such-case"`) {
		t.Errorf("--run matching nothing: %d\n%s\n%s", code, out, stderr)
	}
	dir := t.TempDir()
	module, err := filepath.Abs(ex("magic-validate/magic-validate.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	failing := filepath.Join(dir, "failing.yaml")
	writeFile(t, failing, "apiVersion: wasmkube.dev/v1alpha1\nkind: ModuleTestSuite\nmodule: "+module+"\nhook: validate\ncases:\n"+
		"- name: wrongly expects an admission\n  object: {apiVersion: v1, kind: ConfigMap, metadata: {name: a}, data: {not-allowed-value: x}}\n  expect: {allowed: true}\n")
	code, out, _ = e.run("module", "test", failing)
	if code != 1 || !strings.Contains(out, "FAIL wrongly expects an admission") || !strings.Contains(out, "allowed: want true, got false") ||
		!strings.Contains(out, "decision: denied (HTTP 400)") || !strings.Contains(out, "1 suites, 1 cases: 0 passed, 1 failed") {
		t.Errorf("failing suite: %d\n%s", code, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "apiVersion: wasmkube.dev/v1alpha1\nkind: ModuleTestSuite\nmodule: x.wasm\nhook: validate\ncases:\n- name: a\n  objct: {}\n  expect: {allowed: true}\n")
	code, _, stderr = e.run("module", "test", bad)
	if code != 1 || !strings.Contains(stderr, bad+":7") || !strings.Contains(stderr, `unknown field "cases[0].objct"`) {
		t.Errorf("unknown field: %d\n%s", code, stderr)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
