// Package kubewarden lets standard Go write Kubewarden policies: a Policy validates settings and
// requests; package wapc serves it as a waPC guest (build with GOOS=wasip1 -buildmode=c-shared),
// package wasi as a WASI-mode command (GOOS=wasip1, a main). Both run under Kubewarden's
// policy-server and under wasmkube (`type: kubewarden`).
//
// Like the rest of the guest SDK it reads and writes JSON itself (guest.JSON, guest.Writer), so
// policies stay small and calls fast.
package kubewarden

import (
	"errors"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/review"
)

// Policy is a Kubewarden policy with settings S.
type Policy[S any] struct {
	// Settings decodes the settings; guest.NoSettings for none.
	Settings guest.Settings[S]
	// ValidateSettings checks decoded settings; nil accepts any that decode.
	ValidateSettings func(S) error
	// Validate decides about a request.
	Validate func(*review.Request, S) Response
}

// Response is a policy's answer; build it with Accept, Reject or Mutate.
type Response struct {
	accepted bool
	message  string
	code     int64
	mutated  []byte
	warnings []string
	audit    map[string]string
}

// Accept lets the request through.
func Accept() Response { return Response{accepted: true} }

// Reject refuses the request with message (HTTP code when not 0).
func Reject(message string, code int64) Response {
	return Response{message: message, code: code}
}

// Mutate accepts the request with object (the whole edited object, JSON) in place of the
// request's; the host turns it into a JSON patch. The policy's metadata must say mutating: true.
func Mutate(object []byte) Response { return Response{accepted: true, mutated: object} }

// WithWarnings adds warnings the client shows.
func (r Response) WithWarnings(w ...string) Response {
	r.warnings = append(r.warnings, w...)
	return r
}

// WithAuditAnnotation adds an audit annotation (recorded as POLICY/key).
func (r Response) WithAuditAnnotation(key, value string) Response {
	if r.audit == nil {
		r.audit = map[string]string{}
	}
	r.audit[key] = value
	return r
}

// JSON is the ValidationResponse Kubewarden hosts read.
func (r Response) JSON() []byte {
	var w guest.Writer
	w.ObjectStart().Key("accepted").Bool(r.accepted)
	if r.message != "" {
		w.Key("message").String(r.message)
	}
	if r.code != 0 {
		w.Key("code").Int(r.code)
	}
	if r.mutated != nil {
		w.Key("mutated_object").Raw(r.mutated)
	}
	if len(r.warnings) > 0 {
		w.Key("warnings").Strings(r.warnings)
	}
	if len(r.audit) > 0 {
		w.Key("audit_annotations").StringMap(r.audit)
	}
	return w.ObjectEnd().Bytes()
}

// Serve answers one operation of a Kubewarden host: validate (payload {"request", "settings"}),
// validate_settings (payload: the settings) or protocol_version. A panic in the policy becomes a
// rejection (validate) or invalid settings.
func (p Policy[S]) Serve(op string, payload []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg := "the policy panicked"
			if e, ok := r.(error); ok {
				msg += ": " + e.Error()
			} else if s, ok := r.(string); ok {
				msg += ": " + s
			}
			out, err = Reject(msg, 500).JSON(), nil
		}
	}()
	switch op {
	case "protocol_version":
		return []byte(`"v1"`), nil
	case "validate_settings":
		var w guest.Writer
		w.ObjectStart()
		if err := p.validateSettings(guest.JSON(payload)); err != nil {
			w.Key("valid").Bool(false).Key("message").String(err.Error())
		} else {
			w.Key("valid").Bool(true)
		}
		return w.ObjectEnd().Bytes(), nil
	case "validate":
		in := guest.JSON(payload)
		s, err := p.decode(in.Get("settings"))
		if err != nil {
			return Reject("invalid settings: "+err.Error(), 500).JSON(), nil
		}
		return p.Validate(review.Parse(in.Get("request")), s).JSON(), nil
	}
	return nil, errors.New("unknown operation " + op)
}

func (p Policy[S]) decode(raw guest.JSON) (S, error) {
	if p.Settings == nil {
		var zero S
		return zero, nil
	}
	return p.Settings(raw)
}

func (p Policy[S]) validateSettings(raw guest.JSON) error {
	s, err := p.decode(raw)
	if err != nil || p.ValidateSettings == nil {
		return err
	}
	return p.ValidateSettings(s)
}

// Caller makes a host call of the kubewarden binding (package wapc or wasi provides one).
type Caller func(namespace, operation string, payload []byte) ([]byte, error)

// Host offers Kubewarden's host capabilities through a Caller.
type Host struct{ Call Caller }

// GetResource reads one object (kubernetes/get_resource); namespace is empty for cluster-scoped
// kinds. The policy's metadata must list the kind in contextAwareResources.
func (h Host) GetResource(apiVersion, kind, namespace, name string) (guest.JSON, error) {
	var w guest.Writer
	w.ObjectStart().Key("api_version").String(apiVersion).Key("kind").String(kind).Key("name").String(name)
	if namespace != "" {
		w.Key("namespace").String(namespace)
	}
	out, err := h.Call("kubernetes", "get_resource", w.Key("disable_cache").Bool(false).ObjectEnd().Bytes())
	return guest.JSON(out), err
}

// ListResources lists objects (kubernetes/list_resources_by_namespace, or list_resources_all
// when namespace is empty); labelSelector may be empty.
func (h Host) ListResources(apiVersion, kind, namespace, labelSelector string) (guest.JSON, error) {
	var w guest.Writer
	w.ObjectStart().Key("api_version").String(apiVersion).Key("kind").String(kind)
	op := "list_resources_all"
	if namespace != "" {
		op = "list_resources_by_namespace"
		w.Key("namespace").String(namespace)
	}
	if labelSelector != "" {
		w.Key("label_selector").String(labelSelector)
	}
	out, err := h.Call("kubernetes", op, w.ObjectEnd().Bytes())
	return guest.JSON(out), err
}

// Log writes a line into the host's log (tracing/log).
func (h Host) Log(level, message string) {
	var w guest.Writer
	_, _ = h.Call("tracing", "log", w.ObjectStart().Key("level").String(level).Key("message").String(message).ObjectEnd().Bytes())
}
