// Command unique-ingress-host is a context-aware Kubewarden policy in WASI mode: it rejects an
// Ingress whose host another Ingress already uses, asking the host for every Ingress
// (kubernetes/list_resources_all). Built as a standard Go WASI command and annotated with
// metadata.yml (executionMode: wasi, contextAwareResources).
package main

import (
	"os"
	"strings"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/guest/kubewarden/wasi"
	"github.com/wasmkube/wasmkube/wasm/guest/review"
)

func main() {
	os.Exit(wasi.Run(kubewarden.Policy[struct{}]{Settings: guest.NoSettings, Validate: validate}))
}

func hosts(ingress guest.JSON) []string {
	var out []string
	ingress.Get("spec", "rules").Elements(func(_ int, rule guest.JSON) bool {
		if h := rule.Get("host").String(); h != "" {
			out = append(out, h)
		}
		return true
	})
	return out
}

func validate(r *review.Request, _ struct{}) kubewarden.Response {
	wanted := hosts(r.Object)
	if len(wanted) == 0 {
		return kubewarden.Accept()
	}
	list, err := wasi.Host.ListResources("networking.k8s.io/v1", "Ingress", "", "")
	if err != nil {
		return kubewarden.Reject("cannot list Ingresses: "+err.Error(), 500)
	}
	var clashes []string
	list.Get("items").Elements(func(_ int, other guest.JSON) bool {
		ns, name := other.Get("metadata", "namespace").String(), other.Get("metadata", "name").String()
		if ns == r.Namespace && name == r.Name {
			return true // the Ingress being updated
		}
		for _, h := range hosts(other) {
			for _, w := range wanted {
				if h == w {
					clashes = append(clashes, h+" (used by "+ns+"/"+name+")")
				}
			}
		}
		return true
	})
	if len(clashes) > 0 {
		return kubewarden.Reject("host already in use: "+strings.Join(clashes, ", "), 409)
	}
	wasi.Host.Log("info", "hosts free: "+strings.Join(wanted, ", "))
	return kubewarden.Accept()
}
