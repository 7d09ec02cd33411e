// Package authn lets a module authenticate bearer tokens: register a handler with Handle and
// build with GOOS=wasip1 -buildmode=c-shared; the package exports "authn".
package authn

import (
	"io"

	"github.com/wasmkube/wasmkube/wasm/guest"
)

// Request is the token to check and the audiences the API server wants.
type Request struct {
	Token     string
	Audiences []string
}

// User is who a token belongs to.
type User struct {
	Username string
	UID      string
	Groups   []string
	Extra    map[string][]string
}

// Response is a handler's answer; build it with Authenticated, Unauthenticated or Failed.
type Response struct {
	authenticated bool
	user          User
	audiences     []string
	err           string
}

// Authenticated says the token belongs to u.
func Authenticated(u User) Response { return Response{authenticated: true, user: u} }

// Unauthenticated says the token is not this module's to accept; the next authenticator is asked.
func Unauthenticated() Response { return Response{} }

// Failed says the token could not be checked (an error: it never authenticates anyone).
func Failed(msg string) Response { return Response{err: msg} }

// WithAudiences narrows the audiences the token is valid for.
func (r Response) WithAudiences(aud ...string) Response { r.audiences = aud; return r }

var hook *guest.Hook

// Handle registers the module's authenticator; call it from init. settings decodes the
// module's settings (guest.NoSettings when it has none).
func Handle[S any](settings guest.Settings[S], h func(Request, S) Response) {
	hook = guest.Register(settings, func(req guest.JSON, s S) (*guest.Writer, error) {
		spec := req.Get("spec")
		resp := h(Request{Token: spec.Get("token").String(), Audiences: spec.Get("audiences").Strings()}, s)
		return resp.write(), nil
	})
}

func (r Response) write() *guest.Writer {
	w := &guest.Writer{}
	w.ObjectStart().Key("apiVersion").String("authentication.k8s.io/v1").Key("kind").String("TokenReview")
	w.Key("status").ObjectStart().Key("authenticated").Bool(r.authenticated)
	if r.authenticated {
		w.Key("user").ObjectStart().Key("username").String(r.user.Username)
		if r.user.UID != "" {
			w.Key("uid").String(r.user.UID)
		}
		if len(r.user.Groups) > 0 {
			w.Key("groups").Strings(r.user.Groups)
		}
		if len(r.user.Extra) > 0 {
			w.Key("extra").StringsMap(r.user.Extra)
		}
		w.ObjectEnd()
	}
	if len(r.audiences) > 0 {
		w.Key("audiences").Strings(r.audiences)
	}
	if r.err != "" {
		w.Key("error").String(r.err)
	}
	return w.ObjectEnd().ObjectEnd()
}

// Run answers one call from in to out with the registered handler; the export calls it with
// stdin and stdout, tests with buffers.
func Run(in io.Reader, out io.Writer) { hook.Run(in, out) }
