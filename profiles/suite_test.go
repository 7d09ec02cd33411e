package profiles

import (
	"path/filepath"
	"strings"
	"testing"
)

// Every example's suite parses (examples/*/suite.yaml run in make test, examples_test.go).
func TestExampleSuitesParse(t *testing.T) {
	files, _ := filepath.Glob("../examples/*/suite.yaml")
	if len(files) < 10 {
		t.Fatalf("examples' suites: %v", files)
	}
	for _, f := range files {
		s, err := LoadTestSuite(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if got := s.ResolvePath(s.Module); !filepath.IsAbs(got) && !strings.HasPrefix(s.Module, BuiltinPrefix) {
			t.Errorf("%s: module path %q not made absolute", f, got)
		}
	}
}

func TestInvalidSuites(t *testing.T) {
	const head = "apiVersion: wasmkube.dev/v1alpha1\nkind: ModuleTestSuite\n"
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"unknown field", head + "module: m.wasm\nhook: validate\ncases:\n- name: a\n  object: {apiVersion: v1, kind: ConfigMap}\n  expect: {allowed: true, alowed: false}\n",
			[]string{"s.yaml:8", `unknown field "cases[0].expect.alowed"`, "docs/authoring.md"}},
		{"wrong kind", "apiVersion: wasmkube.dev/v1alpha1\nkind: Profile\n", []string{"s.yaml:2", `kind "Profile" is not a test suite`}},
		{"no kind", "module: m.wasm\n", []string{"missing apiVersion or kind", "kind: ModuleTestSuite"}},
		{"wrong type", head + "module: m.wasm\nhook: validate\ncases:\n- name: a\n  object: {apiVersion: v1, kind: ConfigMap}\n  expect: {allowed: yes-please}\n",
			[]string{"s.yaml:8", `field "cases[0].expect.allowed"`, "want true or false"}},
		{"bad hook and no cases", head + "module: m.wasm\nhook: admission\n", []string{"s.yaml:4: hook: Unsupported value", `"validate"`, "cases: Required value"}},
		{"both ways", head + "module: m.wasm\nhook: validate\ncases:\n- name: a\n  object: {apiVersion: v1, kind: ConfigMap}\n  request: {}\n  expect: {allowed: true}\n",
			[]string{"cases[0].request: Forbidden", "not both"}},
		{"neither", head + "module: m.wasm\nhook: authz\ncases:\n- name: a\n  expect: {decision: Allow}\n", []string{"cases[0].request: Required value", "SubjectAccessReview"}},
		{"other hook's fields", head + "module: m.wasm\nhook: authn\ncases:\n- name: a\n  object: {apiVersion: v1, kind: ConfigMap}\n  expect: {allowed: true}\n",
			[]string{"cases[0].object: Forbidden", "cases[0].expect.allowed: Forbidden", "authenticated, user, error"}},
		{"nothing expected", head + "module: m.wasm\nhook: authn\ncases:\n- name: a\n  token: t\n  expect: {}\n", []string{"cases[0].expect: Required value"}},
		{"duplicate names, bad decision", head + "module: m.wasm\nhook: authz\ncases:\n- name: a\n  request: {}\n  expect: {decision: Maybe}\n- name: a\n  request: {}\n  expect: {reason: r}\n",
			[]string{"cases[0].expect.decision: Unsupported value", "cases[1].name: Duplicate value", "cases[0] has it too"}},
		{"update without old object", head + "module: m.wasm\nhook: validate\ncases:\n- name: a\n  operation: UPDATE\n  object: {apiVersion: v1, kind: ConfigMap}\n  expect: {allowed: true}\n",
			[]string{"cases[0].oldObject: Required value"}},
		{"object without kind", head + "module: m.wasm\nhook: validate\ncases:\n- name: a\n  object: {metadata: {name: x}}\n  expect: {allowed: true}\n",
			[]string{"cases[0].object: Invalid value", "apiVersion and kind"}},
		{"kubewarden authn", head + "module: m.wasm\nhook: authn\ntype: kubewarden\nmutating: true\ncases:\n- name: a\n  token: t\n  expect: {authenticated: true}\n",
			[]string{"hook: Invalid value", "use hook: validate", "mutating: Forbidden"}},
	}
	for _, c := range cases {
		_, err := ParseTestSuite([]byte(c.doc), "s.yaml")
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error lacks %q:\n%v", c.name, w, err)
			}
		}
	}
}
