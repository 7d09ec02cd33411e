package profiles

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestOriginalModuleList feeds the original's configuration example, verbatim.
func TestOriginalModuleList(t *testing.T) {
	list, err := LoadModuleList("testdata/original/admission-modules.yaml", HookAdmission)
	if err != nil {
		t.Fatal(err)
	}
	m := list.Modules[0]
	if m.Name != "my-module" || m.Module.Module != "/path/to/file.wasm" || m.IsMutating() || m.Type != "wasi" || string(m.Settings) != "{}" {
		t.Errorf("decoded %+v", m)
	}
	if r := m.Rules[0]; len(r.Operations) != 2 || r.Resources[0] != "configmaps" || r.APIGroups[0] != "" {
		t.Errorf("rules %+v", m.Rules)
	}

	authn, err := LoadModuleList("testdata/original/authn-modules.yaml", HookAuthentication)
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("testdata/original/magic-authn.wasm")
	if got := authn.Modules[0]; got.Name != "magic-authn" || got.Module.Module != abs {
		t.Errorf("relative module: name %q path %q, want magic-authn %s", got.Name, got.Module.Module, abs)
	}
	if !authn.Modules[1].Debug {
		t.Error("debug not decoded")
	}
}

func TestAdmissionConfigModules(t *testing.T) {
	list, found, err := LoadAdmissionConfigModules("testdata/original/admission-config-path.yaml", WASM)
	if err != nil || !found || list.Modules[0].Name != "my-module" {
		t.Fatalf("path: %v %v %+v", err, found, list)
	}
	list, found, err = LoadAdmissionConfigModules("testdata/original/admission-config-inline.yaml", WASM)
	if err != nil || !found {
		t.Fatalf("inline: %v %v", err, found)
	}
	abs, _ := filepath.Abs("testdata/original/modules/inline.wasm")
	if m := list.Modules[0]; m.Name != "inline" || !m.IsMutating() || m.Module.Module != abs {
		t.Errorf("inline: %+v, want module %s", m, abs)
	}
	if _, found, err := LoadAdmissionConfigModules("testdata/original/admission-config-inline.yaml", "Other"); found || err != nil {
		t.Errorf("no entry: %v %v", found, err)
	}
}

func TestInvalidModuleLists(t *testing.T) {
	cases := []struct {
		hook Hook
		doc  string
		want []string
	}{
		{HookAuthentication, "modules:\n- module: a.wasm\n  mutating: true\n", []string{"authentication module configuration x.yaml is invalid", "x.yaml:3", "modules[0].mutating", "not a field of authentication modules"}},
		{HookAuthorization, "modules:\n- module: a.wasm\n  failurePolicy: Fail\n", []string{"modules[0].failurePolicy", `"Fail"`, "NoOpinion"}},
		{HookAdmission, "modules:\n- module: a.wasm\n  rules: [{operations: [CREATE]}]\n", []string{"modules[0].rules[0].apiGroups"}},
		{HookAdmission, "modules:\n- module: a.wasm\n  rule: []\n", []string{"x.yaml:3", `unknown field "modules[0].rule"`}},
		{HookAdmission, "modules:\n- module: a.wasm\n- module: b/a.wasm\n", []string{"modules[1].name", "Duplicate"}},
		{HookAuthentication, "modules:\n- module: a.wasm\n  grants: {hostCapabilities: [net/*]}\n", []string{"modules[0].grants.hostCapabilities", "type: kubewarden only"}},
		{HookAdmission, "modules:\n- module: a.wasm\n  grants: {contextAwareResources: [{apiVersion: v1, kind: Secret}]}\n", []string{"modules[0].grants.contextAwareResources", "type: kubewarden only"}},
		{HookAdmission, "modules:\n- module: a.wasm\n  type: kubewarden\n  grants: {contextAwareResources: [{apiVersion: v1}]}\n", []string{"modules[0].grants.contextAwareResources[0].kind: Required"}},
		{HookAdmission, "modules:\n- module: a.wasm\n  entrypoint: policy/violation\n", []string{"modules[0].entrypoint", "applies to Rego policies (type: kubewarden, executionMode opa or gatekeeper) only"}},
		{HookAuthorization, "modules:\n- module: a.wasm\n  entrypoint: policy/violation\n", []string{"modules[0].entrypoint", "not a field of authorization modules"}},
	}
	for _, c := range cases {
		_, err := ParseModuleList([]byte(c.doc), "x.yaml", "/base", c.hook)
		if err == nil {
			t.Errorf("%s %q: no error", c.hook, c.doc)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s %q: error lacks %q:\n%v", c.hook, c.doc, w, err)
			}
		}
	}
}

// TestModuleListGrants: a Kubewarden policy in a module list takes the grants of a profile entry.
func TestModuleListGrants(t *testing.T) {
	doc := "modules:\n- module: p.wasm\n  type: kubewarden\n  grants:\n    contextAwareResources: [{apiVersion: networking.k8s.io/v1, kind: Ingress}]\n    hostCapabilities: [kubernetes/can_i]\n"
	list, err := ParseModuleList([]byte(doc), "x.yaml", "/base", HookAdmission)
	if err != nil {
		t.Fatal(err)
	}
	if g := list.Modules[0].Grants; g.ContextAwareResources[0].Kind != "Ingress" || g.HostCapabilities[0] != "kubernetes/can_i" {
		t.Errorf("grants %+v", g)
	}
}
