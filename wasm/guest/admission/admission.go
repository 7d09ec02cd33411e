// Package admission lets a module validate or mutate API requests: register a handler with
// Handle and build with GOOS=wasip1 -buildmode=c-shared; the package exports "validate", which
// the host calls for validating and mutating modules alike.
package admission

import (
	"errors"
	"io"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/review"
)

// Request and the types it uses live in package review, so Kubewarden policies can read
// requests without this package's validate export.
type (
	// Request is an admission.k8s.io/v1 AdmissionRequest.
	Request = review.Request
	// GroupVersionKind names a kind.
	GroupVersionKind = review.GroupVersionKind
	// GroupVersionResource names a resource.
	GroupVersionResource = review.GroupVersionResource
	// UserInfo is who sent the request.
	UserInfo = review.UserInfo
)

func decode(raw guest.JSON) *Request { return review.Parse(raw) }

// Operation is one RFC 6902 JSON patch operation. Value is raw JSON (use guest.Writer or
// strconv.Quote for a string).
type Operation struct {
	Op    string
	Path  string
	Value []byte
	From  string
}

// Response is a handler's answer; build it with Accept, Reject, Mutate or Patch and add
// warnings and audit annotations with its With methods.
type Response struct {
	allowed   bool
	message   string
	code      int32
	patch     []byte
	patchType string
	warnings  []string
	audit     map[string]string
	err       error
}

// Accept lets the request through unchanged.
func Accept() Response { return Response{allowed: true} }

// Reject refuses the request with a message and an HTTP status code (400 when 0).
func Reject(message string, code int32) Response {
	if code == 0 {
		code = 400
	}
	return Response{message: message, code: code}
}

// Mutate accepts the request with object, the whole edited object as JSON, as a "Full" patch:
// the original module ABI's mutation.
func Mutate(object []byte) Response {
	return Response{allowed: true, patch: object, patchType: "Full"}
}

// Patch accepts the request with an RFC 6902 JSON patch.
func Patch(ops ...Operation) Response {
	w := &guest.Writer{}
	w.ArrayStart()
	for _, op := range ops {
		if op.Op == "" || op.Path == "" && op.Op != "add" && op.Op != "replace" {
			return Response{err: errors.New("a patch operation needs op and path")}
		}
		w.ObjectStart().Key("op").String(op.Op).Key("path").String(op.Path)
		if op.From != "" {
			w.Key("from").String(op.From)
		}
		if op.Op == "add" || op.Op == "replace" || op.Op == "test" {
			w.Key("value").Raw(op.Value)
		}
		w.ObjectEnd()
	}
	w.ArrayEnd()
	return Response{allowed: true, patch: w.Bytes(), patchType: "JSONPatch"}
}

// WithWarnings adds warnings that the client shows.
func (r Response) WithWarnings(w ...string) Response {
	r.warnings = append(r.warnings, w...)
	return r
}

// WithAuditAnnotation adds an audit annotation; the host prefixes the key with the module name.
func (r Response) WithAuditAnnotation(key, value string) Response {
	if r.audit == nil {
		r.audit = map[string]string{}
	}
	r.audit[key] = value
	return r
}

func (r Response) write(uid string) (*guest.Writer, error) {
	if r.err != nil {
		return nil, r.err
	}
	w := &guest.Writer{}
	w.ObjectStart().Key("apiVersion").String("admission.k8s.io/v1").Key("kind").String("AdmissionReview")
	w.Key("response").ObjectStart().Key("uid").String(uid).Key("allowed").Bool(r.allowed)
	if r.message != "" || r.code != 0 {
		w.Key("status").ObjectStart()
		if r.message != "" {
			w.Key("message").String(r.message)
		}
		if r.code != 0 {
			w.Key("code").Int(int64(r.code))
		}
		w.ObjectEnd()
	}
	if len(r.patch) > 0 {
		w.Key("patch").Base64(r.patch).Key("patchType").String(r.patchType)
	}
	if len(r.warnings) > 0 {
		w.Key("warnings").Strings(r.warnings)
	}
	if len(r.audit) > 0 {
		w.Key("auditAnnotations").StringMap(r.audit)
	}
	return w.ObjectEnd().ObjectEnd(), nil
}

var hook *guest.Hook

// Handle registers the module's admission handler; call it from init. settings decodes the
// module's settings (guest.NoSettings when it has none).
func Handle[S any](settings guest.Settings[S], h func(*Request, S) Response) {
	hook = guest.Register(settings, func(review guest.JSON, s S) (*guest.Writer, error) {
		raw := review.Get("request")
		if !raw.IsObject() {
			return nil, errors.New("the AdmissionReview has no request")
		}
		req := decode(raw)
		return h(req, s).write(req.UID)
	})
}

// Run answers one call from in to out with the registered handler.
func Run(in io.Reader, out io.Writer) { hook.Run(in, out) }
