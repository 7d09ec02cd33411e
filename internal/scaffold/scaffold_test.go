package scaffold

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/wasmkube/wasmkube/profiles"
)

func options(hook string, kubewarden bool) Options {
	demo, _ := profiles.BuiltinSource("demo")
	sdk := fstest.MapFS{
		"go.mod":              {Data: []byte("module github.com/wasmkube/wasmkube/wasm/guest\n")},
		"guest.go":            {Data: []byte("package guest\n")},
		"guest_test.go":       {Data: []byte("package guest\n")},
		"admission/export.go": {Data: []byte("package admission\n")},
	}
	return Options{Name: "team-policy", Hook: hook, Kubewarden: kubewarden, Version: "v0.0.0-test", SDK: sdk, DemoProfile: demo}
}

// Every kind of module gets its files; the suite and the profile are valid documents, the
// profile is the demo's with the module at the end of the right list, and the SDK comes without
// its tests.
func TestPlan(t *testing.T) {
	for _, c := range []struct {
		hook       string
		kubewarden bool
		list       string
	}{{HookValidate, false, "admission"}, {HookMutate, false, "admission"}, {HookAuthn, false, "authentication"},
		{HookAuthz, false, "authorization"}, {HookValidate, true, "admission"}} {
		files, err := Plan(options(c.hook, c.kubewarden))
		if err != nil {
			t.Fatalf("%s: %v", c.hook, err)
		}
		byPath := map[string]string{}
		for _, f := range files {
			byPath[f.Path] = string(f.Data)
		}
		for _, want := range []string{"main.go", "go.mod", "Makefile", "suite.yaml", "request.yaml", "settings.yaml", "profile.yaml", "README.md", "sdk/go.mod", "sdk/guest.go", "sdk/admission/export.go"} {
			if _, ok := byPath[want]; !ok {
				t.Errorf("%s: no %s", c.hook, want)
			}
		}
		if _, ok := byPath["sdk/guest_test.go"]; ok {
			t.Errorf("%s: the SDK's tests were copied", c.hook)
		}
		if _, ok := byPath["metadata.yml"]; ok != c.kubewarden {
			t.Errorf("%s: metadata.yml present %v, want %v", c.hook, ok, c.kubewarden)
		}
		if _, err := profiles.ParseTestSuite([]byte(byPath["suite.yaml"]), "suite.yaml"); err != nil {
			t.Errorf("%s: %v", c.hook, err)
		}
		p, err := profiles.Parse([]byte(byPath["profile.yaml"]), "profile.yaml")
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.hook, err, byPath["profile.yaml"])
		}
		var last string
		switch c.list {
		case "admission":
			last = p.Admission.Modules[len(p.Admission.Modules)-1].Module.Module
		case "authentication":
			last = p.Authentication.Modules[len(p.Authentication.Modules)-1].Module
		case "authorization":
			last = p.Authorization.Modules[len(p.Authorization.Modules)-1].Module.Module
		}
		if last != "team-policy.wasm" || p.Name != "demo" {
			t.Errorf("%s: profile %s, last %s module %q", c.hook, p.Name, c.list, last)
		}
		if !strings.Contains(byPath["go.mod"], "replace github.com/wasmkube/wasmkube/wasm/guest => ./sdk") || !strings.Contains(byPath["go.mod"], "module team-policy") {
			t.Errorf("%s: go.mod\n%s", c.hook, byPath["go.mod"])
		}
		if strings.Contains(byPath["Makefile"], "module annotate") != c.kubewarden {
			t.Errorf("%s: Makefile\n%s", c.hook, byPath["Makefile"])
		}
	}
}

func TestPlanRefuses(t *testing.T) {
	for name, o := range map[string]Options{
		"Team_Policy": options(HookValidate, false), "9lives": options(HookValidate, false), "a--b": options(HookValidate, false),
		"trailing-": options(HookValidate, false), strings.Repeat("a", 64): options(HookValidate, false),
	} {
		o.Name = name
		if _, err := Plan(o); err == nil || !strings.Contains(err.Error(), "lowercase letters") {
			t.Errorf("name %q: %v", name, err)
		}
	}
	o := options("webhook", false)
	if _, err := Plan(o); err == nil || !strings.Contains(err.Error(), `hook "webhook": use one of validate, mutate, authn, authz`) {
		t.Errorf("bad hook: %v", err)
	}
	o = options(HookAuthn, true)
	if _, err := Plan(o); err == nil || !strings.Contains(err.Error(), "use --hook validate with --kubewarden") {
		t.Errorf("kubewarden authn: %v", err)
	}
}

func TestWriteRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, []File{{"a", []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, []File{{"b", []byte("2")}}); err == nil || !strings.Contains(err.Error(), "exists and is not empty") {
		t.Errorf("second write: %v", err)
	}
}
