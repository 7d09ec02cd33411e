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
	var spec [len(specFields)]guest.JSON
	req.Get("spec").Pick(specFields[:], spec[:])
	r := &Request{User: spec[0].String(), UID: spec[1].String(), Groups: spec[2].Strings(), Extra: spec[3].StringsMap()}
	if ra := spec[4]; ra.Exists() {
		var v [len(resourceFields)]guest.JSON
		ra.Pick(resourceFields[:], v[:])
		r.Resource = &ResourceAttributes{Namespace: v[0].String(), Verb: v[1].String(), Group: v[2].String(),
			Version: v[3].String(), Resource: v[4].String(), Subresource: v[5].String(), Name: v[6].String()}
	} else if nra := spec[5]; nra.Exists() {
		var v [2]guest.JSON
		nra.Pick(nonResourceFields[:], v[:])
		r.NonResource = &NonResourceAttributes{Path: v[0].String(), Verb: v[1].String()}
	}
	return r
}

// The fields decode reads, in the order of its arrays (one pass over each object).
var (
	specFields        = [...]string{"user", "uid", "groups", "extra", "resourceAttributes", "nonResourceAttributes"}
	resourceFields    = [...]string{"namespace", "verb", "group", "version", "resource", "subresource", "name"}
	nonResourceFields = [...]string{"path", "verb"}
)

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
