package wasmkube_test

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/profiles"
)

var update = flag.Bool("update", false, "rewrite golden files")

func builtinProfile(t *testing.T, name string) *profiles.Loaded {
	t.Helper()
	p, err := profiles.NewFinder("").Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPlanGolden pins the flags wasmkube gives kube-apiserver and kube-controller-manager for
// the built-in profiles, and where their modules go.
func TestPlanGolden(t *testing.T) {
	for _, name := range profiles.BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			plan, err := wasmkube.PlanFor(builtinProfile(t, name), wasmkube.Options{DataDir: "/data"})
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("# embedded etcd\nfsync=%v\n", plan.EtcdFsync)
			got += "# kube-apiserver\n" + strings.Join(plan.APIServerArgs, "\n") + "\n"
			if plan.ControllerManagerArgs != nil {
				got += "# kube-controller-manager\n" + strings.Join(plan.ControllerManagerArgs, "\n") + "\n"
			}
			got += fmt.Sprintf("# modules\n%+v\n", plan.Modules)
			golden := "testdata/plan-" + name + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test . -run TestPlanGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("plan differs from %s (-update rewrites it):\n%s", golden, got)
			}
		})
	}
}

// TestPlanOriginalFlags feeds the original proof of concept's flags: they are taken out of the
// kube-apiserver flags and recorded for the module loader.
func TestPlanOriginalFlags(t *testing.T) {
	p := builtinProfile(t, "minimal")
	plan, err := wasmkube.PlanFor(p, wasmkube.Options{DataDir: "/d", APIServerArgs: []string{
		"--authentication-wasm-config-file=/etc/authn.yaml",
		"--authorization-mode=Node,WASM,RBAC",
		"--authorization-wasm-config-file=/etc/authz.yaml",
		"--enable-admission-plugins=NodeRestriction,WASM",
		"--admission-control-config-file=/etc/admission.yaml",
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := profiles.ModulePlan{
		AuthenticationConfigFile: "/etc/authn.yaml", AuthorizationConfigFile: "/etc/authz.yaml",
		AuthorizationChain: []string{"Node", "WASM", "RBAC"}, AdmissionEnabled: true,
		AdmissionConfigFile: "/etc/admission.yaml",
	}
	if fmt.Sprint(plan.Modules) != fmt.Sprint(want) {
		t.Errorf("got %+v, want %+v", plan.Modules, want)
	}
	for _, a := range plan.APIServerArgs {
		if strings.Contains(a, "wasm-config-file") {
			t.Errorf("kube-apiserver would not know %s", a)
		}
	}
	for _, a := range []string{"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction,WASM", "--admission-control-config-file=/etc/admission.yaml"} {
		if !slices.Contains(plan.APIServerArgs, a) {
			t.Errorf("missing %s in %v", a, plan.APIServerArgs)
		}
	}

	// Only modules decide: the built-in chain denies what they leave.
	plan, err = wasmkube.PlanFor(p, wasmkube.Options{DataDir: "/d", APIServerArgs: []string{"authorization-mode=WASM"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(plan.APIServerArgs, "--authorization-mode=AlwaysDeny") {
		t.Errorf("authorization-mode=WASM: %v", plan.APIServerArgs)
	}

	// Admission modules in the profile enable the plugin next to what the flags enable.
	p.Admission = &profiles.Admission{Modules: []profiles.AdmissionModule{{Module: profiles.Module{Name: "m", Module: "builtin:magic-validate"}}}}
	plan, err = wasmkube.PlanFor(p, wasmkube.Options{DataDir: "/d", APIServerArgs: []string{"enable-admission-plugins=AlwaysPullImages"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(plan.APIServerArgs, "--enable-admission-plugins=AlwaysPullImages,WASM") || !plan.Modules.AdmissionEnabled {
		t.Errorf("profile admission modules: %v %+v", plan.APIServerArgs, plan.Modules)
	}

	// The listen address and port are not kube-apiserver flags to pass.
	_, err = wasmkube.PlanFor(p, wasmkube.Options{DataDir: "/d", APIServerArgs: []string{"secure-port=1"}})
	if err == nil || !strings.Contains(err.Error(), `--apiserver-arg "secure-port=1"`) || !strings.Contains(err.Error(), "--port") {
		t.Errorf("secure-port: %v, want an error pointing at --port", err)
	}
}

// TestPlanExternalEtcdPaths: the external etcd's files are resolved against the profile file.
func TestPlanExternalEtcdPaths(t *testing.T) {
	p, err := profiles.Parse([]byte(`apiVersion: wasmkube.dev/v1alpha1
kind: Profile
name: ext
etcd:
  external:
    servers: [https://127.0.0.1:2379]
    caFile: ca.crt
    certFile: /abs/etcd.crt
    keyFile: /abs/etcd.key
    prefix: /ext
`), "/profiles/ext.yaml")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := wasmkube.PlanFor(p, wasmkube.Options{DataDir: "/d"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--etcd-servers=https://127.0.0.1:2379", "--etcd-cafile=/profiles/ca.crt", "--etcd-certfile=/abs/etcd.crt", "--etcd-keyfile=/abs/etcd.key", "--etcd-prefix=/ext"} {
		if !slices.Contains(plan.APIServerArgs, want) {
			t.Errorf("missing %s in %v", want, plan.APIServerArgs)
		}
	}
}
