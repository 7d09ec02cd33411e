package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	for _, want := range []string{"abi:", "the original module ABI): authz", "export:", "authz() -> ()", "loops instrumented", "import:"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q: %d\n%s", want, code, out)
		}
	}
	code, out, stderr = e.run("module", "bench", ex("magic-validate/magic-validate.wasm"), "--hook", "validate", "--request", ex("magic-validate/request.yaml"), "--calls", "100")
	if code != 0 || !strings.Contains(out, "pooled") || !strings.Contains(out, "fresh") || !strings.Contains(out, "faster than fresh") {
		t.Errorf("bench: %d\n%s\n%s", code, out, stderr)
	}
}
