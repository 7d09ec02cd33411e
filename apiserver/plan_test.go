package apiserver

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	"github.com/wasmkube/wasmkube/profiles"
)

var update = flag.Bool("update", false, "rewrite golden files")

func load(t *testing.T, name string) *profiles.Loaded {
	t.Helper()
	p, err := profiles.NewFinder("").Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPlanGolden pins the flags wasmkube gives kube-apiserver and kube-controller-manager for
// the built-in profiles.
func TestPlanGolden(t *testing.T) {
	for _, name := range profiles.BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			plan, err := NewPlan(PlanInput{Profile: load(t, name), DataDir: "/data"})
			if err != nil {
				t.Fatal(err)
			}
			got := "# kube-apiserver\n" + strings.Join(plan.APIServerArgs, "\n") + "\n"
			if plan.ControllerManagerArgs != nil {
				got += "# kube-controller-manager\n" + strings.Join(plan.ControllerManagerArgs, "\n") + "\n"
			}
			got += fmt.Sprintf("# modules\n%+v\n", plan.WASM)
			golden := "testdata/plan-" + name + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./apiserver -run TestPlanGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("plan differs from %s (-update rewrites it):\n%s", golden, got)
			}
		})
	}
}

func TestPlanExtraArgsOverride(t *testing.T) {
	p := load(t, "demo")
	p.APIServer.ExtraArgs = []string{"--authorization-mode=RBAC", "v=2", "feature-gates=A=true"}
	plan, err := NewPlan(PlanInput{
		Profile: p, DataDir: "/d", Port: ptr.To[int32](0),
		ExtraAPIServerArgs: []string{"v=4", "feature-gates=B=true", "feature-gates=C=false"},
	})
	if err != nil {
		t.Fatal(err)
	}
	args := plan.APIServerArgs
	if slices.Contains(args, "--authorization-mode=Node,RBAC") || !slices.Contains(args, "--authorization-mode=RBAC") {
		t.Errorf("profile extraArgs did not replace the default authorization mode: %v", args)
	}
	if slices.Contains(args, "--v=2") || !slices.Contains(args, "--v=4") {
		t.Errorf("--apiserver-arg did not replace the profile's v: %v", args)
	}
	if slices.Contains(args, "--feature-gates=A=true") || !slices.Contains(args, "--feature-gates=B=true") || !slices.Contains(args, "--feature-gates=C=false") {
		t.Errorf("a flag repeated in one layer must be kept twice and replace earlier layers: %v", args)
	}
	if !slices.Contains(args, "--secure-port=0") {
		t.Errorf("port override missing: %v", args)
	}
}

func TestPlanRejectsOwnedFlags(t *testing.T) {
	_, err := NewPlan(PlanInput{Profile: load(t, "demo"), DataDir: "/d", ExtraAPIServerArgs: []string{"secure-port=1"}})
	if err == nil || !strings.Contains(err.Error(), "--port") {
		t.Fatalf("got %v, want an error pointing at --port", err)
	}
}

func TestPlanEtcdSocketAndPort(t *testing.T) {
	plan, err := NewPlan(PlanInput{Profile: load(t, "minimal"), DataDir: "/d"})
	if err != nil {
		t.Fatal(err)
	}
	if plan.ControllerManagerArgs != nil {
		t.Error("minimal runs no controllers, but the plan has their flags")
	}
	if !slices.Contains(plan.APIServerArgs, "--etcd-servers=unix:///d/etcd.sock") || !slices.Equal(plan.EtcdServers, []string{"unix:///d/etcd.sock"}) {
		t.Errorf("embedded etcd: %v %v, want its socket in the data dir", plan.EtcdServers, plan.APIServerArgs)
	}
	running := plan.WithPort(40000)
	if !slices.Contains(running.APIServerArgs, "--secure-port=40000") {
		t.Errorf("running plan: %v", running.APIServerArgs)
	}
	if running.Server() != "https://127.0.0.1:40000" {
		t.Errorf("server = %s", running.Server())
	}
	if slices.Contains(plan.APIServerArgs, "--secure-port=40000") {
		t.Error("WithPort changed the original plan")
	}
}

// TestEtcdSocketLongDataDir: a data dir too long for a unix socket address, or with a comma
// (--etcd-servers is a list), gets a socket named after it in a private directory of the user's.
func TestEtcdSocketLongDataDir(t *testing.T) {
	runtimeDir := t.TempDir()
	long := "/" + strings.Repeat("long-directory-name/", 6) + "data"
	for _, dataDir := range []string{long, "/tmp/a,b"} {
		t.Run(dataDir, func(t *testing.T) {
			t.Setenv("XDG_RUNTIME_DIR", runtimeDir)
			sock := Layout{DataDir: dataDir}.EtcdSocket()
			if filepath.Dir(sock) != filepath.Join(runtimeDir, "wasmkube") || len(sock) > MaxSocketPath {
				t.Errorf("socket %s (%d bytes), want one in %s/wasmkube of at most %d bytes", sock, len(sock), runtimeDir, MaxSocketPath)
			}
			if other := (Layout{DataDir: dataDir + "2"}).EtcdSocket(); other == sock {
				t.Errorf("two data dirs share the socket %s", sock)
			}
			t.Setenv("XDG_RUNTIME_DIR", "")
			t.Setenv("TMPDIR", "/"+strings.Repeat("t", 100))
			want := fmt.Sprintf("/tmp/wasmkube-%d/", os.Geteuid())
			if sock := (Layout{DataDir: dataDir}).EtcdSocket(); !strings.HasPrefix(sock, want) || len(sock) > MaxSocketPath {
				t.Errorf("without a runtime dir and a long TMPDIR: %s, want one in %s", sock, want)
			}
		})
	}
	if got := (Layout{DataDir: "/short"}).EtcdSocket(); got != "/short/etcd.sock" {
		t.Errorf("short data dir: %s, want /short/etcd.sock", got)
	}
}

func TestPlanExternalEtcd(t *testing.T) {
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
	plan, err := NewPlan(PlanInput{Profile: p, DataDir: "/d"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--etcd-servers=https://127.0.0.1:2379", "--etcd-cafile=/profiles/ca.crt", "--etcd-certfile=/abs/etcd.crt", "--etcd-prefix=/ext"} {
		if !slices.Contains(plan.APIServerArgs, want) {
			t.Errorf("missing %s in %v", want, plan.APIServerArgs)
		}
	}
}

// TestPlanOriginalFlags feeds the original proof of concept's flags: they are taken out of the
// kube-apiserver flags and recorded for the module loader.
func TestPlanOriginalFlags(t *testing.T) {
	p := load(t, "minimal")
	plan, err := NewPlan(PlanInput{Profile: p, DataDir: "/d", ExtraAPIServerArgs: []string{
		"--authentication-wasm-config-file=/etc/authn.yaml",
		"--authorization-mode=Node,WASM,RBAC",
		"--authorization-wasm-config-file=/etc/authz.yaml",
		"--enable-admission-plugins=NodeRestriction,WASM",
		"--admission-control-config-file=/etc/admission.yaml",
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := WASMPlan{
		AuthenticationConfigFile: "/etc/authn.yaml", AuthorizationConfigFile: "/etc/authz.yaml",
		AuthorizationChain: []string{"Node", "WASM", "RBAC"}, AdmissionEnabled: true,
		AdmissionConfigFile: "/etc/admission.yaml",
	}
	if fmt.Sprint(plan.WASM) != fmt.Sprint(want) {
		t.Errorf("got %+v, want %+v", plan.WASM, want)
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
	plan, err = NewPlan(PlanInput{Profile: p, DataDir: "/d", ExtraAPIServerArgs: []string{"authorization-mode=WASM"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(plan.APIServerArgs, "--authorization-mode=AlwaysDeny") {
		t.Errorf("authorization-mode=WASM: %v", plan.APIServerArgs)
	}

	// Admission modules in the profile enable the plugin next to what the flags enable.
	p.Admission = &profiles.Admission{Modules: []profiles.AdmissionModule{{Module: profiles.Module{Name: "m", Module: "builtin:magic-validate"}}}}
	plan, err = NewPlan(PlanInput{Profile: p, DataDir: "/d", ExtraAPIServerArgs: []string{"enable-admission-plugins=AlwaysPullImages"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(plan.APIServerArgs, "--enable-admission-plugins=AlwaysPullImages,WASM") || !plan.WASM.AdmissionEnabled {
		t.Errorf("profile admission modules: %v %+v", plan.APIServerArgs, plan.WASM)
	}
}
