package profiles

import (
	"fmt"
	"testing"
)

// TestTakeWASMFlags: the original's flags are taken out of both layers, a later layer's flag
// wins, WASM leaves --authorization-mode, and the WASM admission plugin is enabled where the
// winning --enable-admission-plugins is (or by default), modules or not (a reload may add some).
func TestTakeWASMFlags(t *testing.T) {
	admission := &Admission{Modules: []AdmissionModule{{Module: Module{Name: "m", Module: "m.wasm"}}}}
	cases := []struct {
		name      string
		profile   Profile
		extra     []string
		want      string // fmt.Sprint of the result
		wantPlace int
	}{
		{"defaults", Profile{}, nil,
			"{[Node RBAC] [WASM] [[] []] {  [Node RBAC WASM] true }}", 2},
		{"profile chain and admission modules", Profile{Authorization: &Authorization{Chain: []string{"WASM", "Node"}}, Admission: admission}, nil,
			"{[Node] [WASM] [[] []] {  [WASM Node] true }}", 0},
		{"the later layer wins", Profile{APIServer: APIServer{ExtraArgs: []string{"authorization-mode=RBAC,WASM", "authentication-wasm-config-file=/a", "enable-admission-plugins=X"}}, Admission: admission},
			[]string{"--authorization-mode=Node,WASM,RBAC", "--authentication-wasm-config-file=/b", "--authorization-wasm-config-file=/z", "v=2"},
			"{[Node RBAC] [] [[authorization-mode=RBAC enable-admission-plugins=X,WASM] [authorization-mode=Node,RBAC v=2]] {/b /z [Node WASM RBAC] true }}", 1},
		{"enabled by a flag", Profile{}, []string{"enable-admission-plugins=WASM", "admission-control-config-file=/c"},
			"{[Node RBAC] [] [[] [enable-admission-plugins=WASM admission-control-config-file=/c]] {  [Node RBAC WASM] true /c}}", 2},
		{"only WASM", Profile{}, []string{"authorization-mode=WASM"},
			"{[Node RBAC] [WASM] [[] [authorization-mode=AlwaysDeny]] {  [WASM] true }}", 0},
		{"a user's list without WASM gets it", Profile{}, []string{"enable-admission-plugins=NamespaceLifecycle"},
			"{[Node RBAC] [] [[] [enable-admission-plugins=NamespaceLifecycle,WASM]] {  [Node RBAC WASM] true }}", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := TakeWASMFlags(&c.profile, c.extra)
			if got := fmt.Sprint(f); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
			if got := AuthorizerPlace(f.Modules.AuthorizationChain); got != c.wantPlace {
				t.Errorf("place %d, want %d", got, c.wantPlace)
			}
		})
	}
}
