// Command magic-authn is the original proof of concept's authenticator: the token magic-token
// belongs to magic-user (uid 0, group magic-group); any other token is not this module's.
package main

import (
	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/authn"
)

func main() {}

func init() { authn.Handle(guest.NoSettings, authenticate) }

func authenticate(r authn.Request, _ struct{}) authn.Response {
	if r.Token != "magic-token" {
		return authn.Unauthenticated()
	}
	return authn.Authenticated(authn.User{Username: "magic-user", UID: "0", Groups: []string{"magic-group"}})
}
