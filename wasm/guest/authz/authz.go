// Package authz lets a module authorize requests: register a handler with Handle and build with
// GOOS=wasip1 -buildmode=c-shared; the package exports "authz".
package authz

import (
	"io"
	"slices"

	"github.com/wasmkube/wasmkube/wasm/guest"
)

// ResourceAttributes describe a request for a resource.
type ResourceAttributes struct {
	Namespace, Verb, Group, Version, Resource, Subresource, Name string
}

// NonResourceAttributes describe a request for a path such as /healthz.
type NonResourceAttributes struct{ Path, Verb string }

// Request is what a SubjectAccessReview's spec says: who asks for what. Exactly one of
// Resource and NonResource is set.
type Request struct {
	User        string
	UID         string
	Groups      []string
	Extra       map[string][]string
	Resource    *ResourceAttributes
	NonResource *NonResourceAttributes
}

// InGroup reports whether the user is in group g.
func (r *Request) InGroup(g string) bool { return slices.Contains(r.Groups, g) }

// Response is a decision; build it with Allow, Deny or NoOpinion.
type Response struct {
	allowed, denied bool
	reason          string
}

// Allow allows the request.
func Allow(reason string) Response { return Response{allowed: true, reason: reason} }

// Deny denies the request; no later authorizer is asked.
func Deny(reason string) Response { return Response{denied: true, reason: reason} }

// NoOpinion leaves the decision to the next authorizer.
func NoOpinion() Response { return Response{} }

var hook *guest.Hook

// Handle registers the module's authorizer; call it from init. settings decodes the module's
// settings (guest.NoSettings when it has none).
func Handle[S any](settings guest.Settings[S], h func(*Request, S) Response) {
	hook = guest.Register(settings, func(req guest.JSON, s S) (*guest.Writer, error) {
		return h(decode(req), s).write(), nil
	})
}

func decode(req guest.JSON) *Request {
	spec := req.Get("spec")
	r := &Request{
		User: spec.Get("user").String(), UID: spec.Get("uid").String(),
		Groups: spec.Get("groups").Strings(), Extra: spec.Get("extra").StringsMap(),
	}
	if ra := spec.Get("resourceAttributes"); ra.Exists() {
		r.Resource = &ResourceAttributes{
			Namespace: ra.Get("namespace").String(), Verb: ra.Get("verb").String(), Group: ra.Get("group").String(),
			Version: ra.Get("version").String(), Resource: ra.Get("resource").String(),
			Subresource: ra.Get("subresource").String(), Name: ra.Get("name").String(),
		}
	} else if nra := spec.Get("nonResourceAttributes"); nra.Exists() {
		r.NonResource = &NonResourceAttributes{Path: nra.Get("path").String(), Verb: nra.Get("verb").String()}
	}
	return r
}

func (r Response) write() *guest.Writer {
	w := &guest.Writer{}
	w.ObjectStart().Key("apiVersion").String("authorization.k8s.io/v1").Key("kind").String("SubjectAccessReview")
	w.Key("status").ObjectStart().Key("allowed").Bool(r.allowed)
	if r.denied {
		w.Key("denied").Bool(true)
	}
	if r.reason != "" {
		w.Key("reason").String(r.reason)
	}
	return w.ObjectEnd().ObjectEnd()
}

// Run answers one call from in to out with the registered handler.
func Run(in io.Reader, out io.Writer) { hook.Run(in, out) }
