package authn_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/authn"
)

// An authenticator: one token is magic-user's, every other token is left to the next
// authenticator. A module calls Handle in init; built with GOOS=wasip1, the package's "authn"
// export answers the host's calls. Here Run answers two TokenReviews as the host sends them.
func Example() {
	authn.Handle(guest.NoSettings, func(r authn.Request, _ struct{}) authn.Response {
		if r.Token != "magic-token" {
			return authn.Unauthenticated()
		}
		return authn.Authenticated(authn.User{Username: "magic-user", UID: "0", Groups: []string{"magic-group"}})
	})

	for _, token := range []string{"magic-token", "other-token"} {
		envelope := `{"request":{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"` + token + `"}}}`
		authn.Run(strings.NewReader(envelope), os.Stdout)
		fmt.Println()
	}
	// Output:
	// {"response":{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":true,"user":{"username":"magic-user","uid":"0","groups":["magic-group"]}}}}
	// {"response":{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":false}}}
}
