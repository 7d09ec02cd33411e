package wasmkube

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/wasmkube/wasmkube/apiserver"
	"github.com/wasmkube/wasmkube/apiserver/nodes"
	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/source"
)

// TestModuleConfig: a profile entry's per-module options reach the runtime, relative granted
// directories resolved against the profile file.
func TestModuleConfig(t *testing.T) {
	p := &profiles.Loaded{Profile: &profiles.Profile{Name: "p"}, Source: "/etc/wasmkube/p.yaml"}
	m := profiles.Module{
		Name: "m", Module: "m.wasm", Settings: json.RawMessage(`{}`),
		Timeout: &metav1.Duration{Duration: time.Second}, MemoryLimit: "32Mi", Isolation: "fresh",
		PoolSize: ptr.To[int32](3), Debug: true,
		Grants: &profiles.Grants{Env: map[string]string{"A": "1"}, Args: []string{"x"},
			ReadOnlyDirs: []profiles.DirMount{{HostPath: "data", GuestPath: "/data"}}},
	}
	cfg := moduleConfig(p, m, envelope.ExportValidate)
	if cfg.Name != "m" || cfg.Exports[0] != "validate" || cfg.Timeout != time.Second || cfg.MemoryLimit != 32<<20 ||
		cfg.Isolation != wasm.Fresh || cfg.PoolSize != 3 || !cfg.Debug {
		t.Errorf("config %+v", cfg)
	}
	g := cfg.Grants
	if g.Env["A"] != "1" || g.Args[0] != "x" || g.ReadOnlyDirs[0].HostPath != filepath.Join("/etc/wasmkube", "data") || g.ReadOnlyDirs[0].GuestPath != "/data" {
		t.Errorf("grants %+v", g)
	}
}

// TestCheckPolicyGrants: a policy asking for more than it is granted is refused with profile
// lines that, added to its entry, grant it; a granted capability that names no host call is
// refused.
func TestCheckPolicyGrants(t *testing.T) {
	bin, ok := examples.Module("unique-ingress-host")
	if !ok {
		t.Fatal("no unique-ingress-host")
	}
	md, _, err := kubewarden.ReadMetadata(bin)
	if err != nil {
		t.Fatal(err)
	}
	md.HostCapabilities = []string{"kubernetes/can_i", "net/*"}
	if bin, err = kubewarden.Annotate(bin, md); err != nil {
		t.Fatal(err)
	}
	err = checkPolicyGrants("profile p: admission.modules[0] (u)", bin, kubewarden.PolicyGrants{})
	if err == nil {
		t.Fatal("a policy asking for Ingresses, can_i and net/* was granted nothing and not refused")
	}
	_, lines, found := strings.Cut(err.Error(), "merging with any grants it has):\n")
	if !found || !strings.HasPrefix(err.Error(), "profile p: admission.modules[0] (u): ") {
		t.Fatalf("error: %v", err)
	}
	doc := "apiVersion: wasmkube.dev/v1alpha1\nkind: Profile\nname: p\nadmission:\n  modules:\n  - module: builtin:unique-ingress-host\n    type: kubewarden\n" + lines
	p, err := profiles.Parse([]byte(doc), "p.yaml")
	if err != nil {
		t.Fatalf("the printed lines do not make a valid profile: %v\n%s", err, doc)
	}
	if err := checkPolicyGrants("p", bin, policyGrants(p.Admission.Modules[0].Grants)); err != nil {
		t.Errorf("with the printed lines added: %v\n%s", err, doc)
	}
	err = checkPolicyGrants("p", bin, kubewarden.PolicyGrants{HostCapabilities: []string{"net/v1/dns"}})
	if err == nil || !strings.Contains(err.Error(), `p: grants.hostCapabilities[0]: "net/v1/dns" matches no host capability`) {
		t.Errorf("a granted capability that names nothing: %v", err)
	}
}

// TestModuleBytesBuiltin: builtin:NAME is read from Options.BuiltinModules; without them the
// error says they were not provided and how to provide them; an unknown name lists the known.
func TestModuleBytesBuiltin(t *testing.T) {
	p := &profiles.Loaded{Profile: &profiles.Profile{Name: "p"}, Source: "/etc/wasmkube/p.yaml"}
	_, err := moduleBytes(nil, p.ResolvePath, "builtin:magic-authn")
	if err == nil || !strings.Contains(err.Error(), "built-in modules were not provided") || !strings.Contains(err.Error(), "Options.BuiltinModules") {
		t.Errorf("without built-in modules: %v", err)
	}
	want, _ := examples.Module("magic-authn")
	got, err := moduleBytes(examples.FS(), p.ResolvePath, "builtin:magic-authn")
	if err != nil || len(got) == 0 || string(got) != string(want) {
		t.Errorf("builtin:magic-authn: %d bytes, %v", len(got), err)
	}
	_, err = moduleBytes(examples.FS(), p.ResolvePath, "builtin:nosuch")
	if err == nil || !strings.Contains(err.Error(), `no built-in module "nosuch"; built in: `) || !strings.Contains(err.Error(), "magic-authn, magic-authz") {
		t.Errorf("unknown built-in module: %v", err)
	}
}

// TestModuleReaderChecksPins: a pinned module whose bytes differ is refused, naming both
// digests; a right pin (as sha256:HEX or HEX) passes; a remote module without a fetcher is refused.
func TestModuleReaderChecksPins(t *testing.T) {
	p := &profiles.Loaded{Profile: &profiles.Profile{Name: "p"}, Source: "builtin:p"}
	r := moduleReader{builtin: examples.FS()}
	bin, err := r.read(t.Context(), p.ResolvePath, profiles.Module{Module: "builtin:magic-authn"})
	if err != nil {
		t.Fatal(err)
	}
	right := source.Digest(bin)
	for _, pin := range []string{right, strings.TrimPrefix(right, "sha256:")} {
		if _, err := r.read(t.Context(), p.ResolvePath, profiles.Module{Module: "builtin:magic-authn", SHA256: pin}); err != nil {
			t.Errorf("pin %s: %v", pin, err)
		}
	}
	wrong := source.Digest([]byte("x"))
	_, err = r.read(t.Context(), p.ResolvePath, profiles.Module{Module: "builtin:magic-authn", SHA256: wrong})
	if err == nil || !strings.Contains(err.Error(), right) || !strings.Contains(err.Error(), "pins "+wrong) {
		t.Errorf("wrong pin: %v", err)
	}
	if _, err := r.read(t.Context(), p.ResolvePath, profiles.Module{Module: "registry://localhost:5000/m:v1"}); err == nil || !strings.Contains(err.Error(), "ModuleFetcher") {
		t.Errorf("no fetcher: %v", err)
	}
}

func TestRestartChangesNamesSchedulerAndNodes(t *testing.T) {
	running := &Plan{Plan: &apiserver.Plan{SchedulerArgs: []string{"--v=1"}}}
	edited := &Plan{Plan: &apiserver.Plan{SchedulerArgs: []string{"--v=2"}},
		Nodes: &nodes.Spec{Count: 2, CPU: resource.MustParse("4"), Memory: resource.MustParse("8Gi"), Pods: 110}}
	got := strings.Join(restartChanges(running, edited), "; ")
	for _, want := range []string{"kube-scheduler flag --v=1 removed", "kube-scheduler flag --v=2 added", "simulated nodes none → 2 × (cpu 4, memory 8Gi, pods 110)"} {
		if !strings.Contains(got, want) {
			t.Errorf("restart changes %q lack %q", got, want)
		}
	}
	if c := restartChanges(edited, edited); len(c) != 0 {
		t.Errorf("no change: %q", c)
	}
}
