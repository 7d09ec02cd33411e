// Command magic-authz is the original proof of concept's authorizer: members of magic-group may
// access configmaps; about everything else it has no opinion.
package main

import (
	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/authz"
)

func main() {}

func init() { authz.Handle(guest.NoSettings, authorize) }

func authorize(r *authz.Request, _ struct{}) authz.Response {
	if r.InGroup("magic-group") && r.Resource != nil && r.Resource.Resource == "configmaps" {
		return authz.Allow("magic-group may access configmaps")
	}
	return authz.NoOpinion()
}
