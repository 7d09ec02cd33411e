package wasmkube_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
)

func runSuite(t *testing.T, doc string) *wasmkube.SuiteResult {
	t.Helper()
	s, err := profiles.ParseTestSuite([]byte("apiVersion: wasmkube.dev/v1alpha1\nkind: ModuleTestSuite\n"+doc), "suite.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := wasmkube.RunTestSuite(context.Background(), s, wasmkube.TestSuiteOptions{BuiltinModules: examples.FS(), ModuleCacheDir: "-"})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A case whose expectation is wrong fails, and says how; the right ones pass.
func TestRunTestSuiteMismatches(t *testing.T) {
	res := runSuite(t, `module: builtin:magic-validate
hook: validate
cases:
- name: right
  object: {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: default}, data: {not-allowed-value: x}}
  expect: {allowed: false, code: 400, message: not allowed}
- name: wrong verdict
  object: {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: default}, data: {not-allowed-value: x}}
  expect: {allowed: true}
- name: wrong message and code
  object: {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: default}, data: {not-allowed-value: x}}
  expect: {message: something else, code: 403}
- name: expects a failure that does not come
  object: {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: default}}
  expect: {error: boom}
- name: expects warnings
  object: {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: default}}
  expect: {allowed: true, warnings: [careful]}
`)
	want := map[string][]string{
		"right":                                nil,
		"wrong verdict":                        {"allowed: want true, got false"},
		"wrong message and code":               {`message: want it to contain "something else"`, "code: want 403, got 400"},
		"expects a failure that does not come": {`error: want the module to fail with "boom", it answered`},
		"expects warnings":                     {`warnings: want ["careful"], got []`},
	}
	if len(res.Cases) != len(want) || res.Failed() != 4 {
		t.Fatalf("%d cases, %d failed: %+v", len(res.Cases), res.Failed(), res.Cases)
	}
	for _, c := range res.Cases {
		got := strings.Join(c.Mismatches, "\n")
		if len(want[c.Name]) == 0 && !c.Passed() {
			t.Errorf("%s: failed: %s", c.Name, got)
		}
		for _, w := range want[c.Name] {
			if !strings.Contains(got, w) {
				t.Errorf("%s: mismatches lack %q:\n%s", c.Name, w, got)
			}
		}
	}
	if d := res.Cases[1].Decision; !strings.Contains(d, `denied (HTTP 400): admission WASM module "magic-validate" denied the request`) {
		t.Errorf("decision %q", d)
	}
}

// A mutating module's result is compared as JSON, with a diff when it differs.
func TestRunTestSuiteObject(t *testing.T) {
	res := runSuite(t, `module: builtin:magic-mutate
hook: validate
mutating: true
cases:
- name: same value, other key order and layout
  object: {apiVersion: v1, kind: ConfigMap, metadata: {name: a}, data: {a: "1"}}
  expect:
    object: {data: {magic-value: foobar, a: "1"}, kind: ConfigMap, apiVersion: v1, metadata: {name: a}}
- name: wrong value
  object: {apiVersion: v1, kind: ConfigMap, metadata: {name: a}, data: {a: "1"}}
  expect:
    object: {apiVersion: v1, kind: ConfigMap, metadata: {name: a}, data: {a: "1", magic-value: barfoo}}
`)
	if !res.Cases[0].Passed() {
		t.Errorf("equal objects: %v", res.Cases[0].Mismatches)
	}
	got := strings.Join(res.Cases[1].Mismatches, "\n")
	for _, w := range []string{"object (-want +got)", `-`, `"barfoo"`, `+`, `"foobar"`} {
		if !strings.Contains(got, w) {
			t.Errorf("diff lacks %q:\n%s", w, got)
		}
	}
}

// A module that fails fails the case, unless the case expects it; a module that does not load
// stops the suite with an error naming it.
func TestRunTestSuiteFailures(t *testing.T) {
	res := runSuite(t, `module: builtin:hmac-authn
hook: authn
cases:
- name: expected
  token: v1.x.y
  expect: {error: no secret}
- name: unexpected
  token: v1.x.y
  expect: {authenticated: false}
`)
	if !res.Cases[0].Passed() {
		t.Errorf("expected failure: %v", res.Cases[0].Mismatches)
	}
	if got := strings.Join(res.Cases[1].Mismatches, "\n"); !strings.Contains(got, "the module failed") || strings.Contains(got, "v1.x.y") {
		t.Errorf("unexpected failure (and the token must not be shown): %s", got)
	}
	s, err := profiles.ParseTestSuite([]byte("apiVersion: wasmkube.dev/v1alpha1\nkind: ModuleTestSuite\nmodule: builtin:nosuch\nhook: authn\ncases:\n- name: a\n  token: t\n  expect: {authenticated: false}\n"), "/x/suite.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = wasmkube.RunTestSuite(context.Background(), s, wasmkube.TestSuiteOptions{BuiltinModules: examples.FS(), ModuleCacheDir: "-"})
	if err == nil || !strings.Contains(err.Error(), "test suite /x/suite.yaml: module builtin:nosuch") || !strings.Contains(err.Error(), `no built-in module "nosuch"`) {
		t.Errorf("missing module: %v", err)
	}
}

// A hostile module under test is stopped by the sandbox's bounds (the default timeout and memory
// limit hold in module test as in the server): its cases fail with the failure, or pass when
// they expect it, and the suite ends.
func TestRunTestSuiteHostileModules(t *testing.T) {
	for file, failure := range map[string]string{"recursion": "timeout", "memory-growth": "timeout"} {
		module, err := filepath.Abs(filepath.Join("wasm", "testdata", "hostile", file+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		res := runSuite(t, "module: "+module+`
hook: validate
cases:
- name: expects the failure
  object: {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}
  expect: {error: `+failure+`}
- name: expects an answer
  object: {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}
  expect: {allowed: true}
`)
		if took := time.Since(began); took > time.Minute {
			t.Errorf("%s: the suite took %s", file, took)
		}
		if !res.Cases[0].Passed() {
			t.Errorf("%s: %v", file, res.Cases[0].Mismatches)
		}
		got := strings.Join(res.Cases[1].Mismatches, "\n")
		if !strings.Contains(got, "the module failed") || !strings.Contains(got, failure) || !strings.Contains(got, "allowed: want true, got false") {
			t.Errorf("%s: a failure must fail the case and deny (failurePolicy Fail): %s", file, got)
		}
	}
}
