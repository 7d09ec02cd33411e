package authz_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/authz"
)

// An authorizer: magic-group may do anything with configmaps; about everything else it has no
// opinion, so the next authorizer (RBAC) decides. A module calls Handle in init; built with
// GOOS=wasip1, the package's "authz" export answers the host's calls. Here Run answers two
// SubjectAccessReviews as the host sends them.
func Example() {
	authz.Handle(guest.NoSettings, func(r *authz.Request, _ struct{}) authz.Response {
		if r.InGroup("magic-group") && r.Resource != nil && r.Resource.Resource == "configmaps" {
			return authz.Allow("magic-group may use configmaps")
		}
		return authz.NoOpinion()
	})

	for _, resource := range []string{"configmaps", "pods"} {
		envelope := `{"request":{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{` +
			`"user":"magic-user","groups":["magic-group"],` +
			`"resourceAttributes":{"namespace":"default","verb":"list","version":"v1","resource":"` + resource + `"}}}}`
		authz.Run(strings.NewReader(envelope), os.Stdout)
		fmt.Println()
	}
	// Output:
	// {"response":{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","status":{"allowed":true,"reason":"magic-group may use configmaps"}}}
	// {"response":{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","status":{"allowed":false}}}
}
