// Package envelope is the module ABI of the original proof of concept, kept so its modules run
// unchanged (docs/module-spec.md): a module exports authn, authz and validate, each a WASI
// reactor function without parameters; the host writes {"request", "settings"} to its stdin and
// the module writes {"response", "error"} to stdout. The request is a TokenReview, a
// SubjectAccessReview or an AdmissionReview; the response the same kind, answered.
//
// This package makes the calls and checks that the answers keep the ABI's contract; what the API
// server decides from them is package hook's.
package envelope

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/wasmkube/wasmkube/wasm"
)

// The exports of the ABI, one per hook.
const (
	// ExportAuthn authenticates: a TokenReview in, the TokenReview answered out.
	ExportAuthn = "authn"
	// ExportAuthz authorizes: a SubjectAccessReview in and out.
	ExportAuthz = "authz"
	// ExportValidate admits, for validating and mutating modules alike: an AdmissionReview.
	ExportValidate = "validate"
)

// The module ABI's envelope (docs/module-spec.md): the host writes {"request", "settings"} to
// stdin, the module writes {"response", "error"} to stdout.

type envelopeIn struct {
	Request  any             `json:"request"`
	Settings json.RawMessage `json:"settings,omitempty"`
}

type envelopeOut struct {
	Response json.RawMessage `json:"response"`
	Error    string          `json:"error"`
}

// Call sends request (and settings, omitted when nil) to m's export and decodes the module's
// response into response.
//
// # Notes
//
//   - stdout must hold exactly one JSON document; anything else is KindInvalidJSON.
//   - A non-empty "error" is KindModuleError; neither "response" nor "error" is KindMissingResponse.
//   - With ModuleConfig.Debug, input and output are logged with RedactTokens.
func Call(ctx context.Context, m *wasm.Module, export string, request any, settings json.RawMessage, response any) error {
	return call(ctx, m, export, request, settings, response, "")
}

// call is Call for a request that carries secret (a bearer token): its value is redacted from
// the error (its text and stderr) and from the debug log. The response is decoded as the module
// wrote it.
func call(ctx context.Context, m *wasm.Module, export string, request any, settings json.RawMessage, response any, secret string) (err error) {
	in, err := json.Marshal(envelopeIn{Request: request, Settings: settings})
	if err != nil {
		return fmt.Errorf("module %q: encode request: %w", m.Name(), err)
	}
	var moduleErr string
	var debugOut []byte
	debug := m.Config().Debug
	if debug {
		defer func() {
			m.Logger().Info("module call", "export", export, "input", RedactTokens(in, secret), "output", RedactTokens(debugOut, secret), "err", err)
		}()
	}
	defer func() { err = RedactError(err, secret) }() // runs before the debug log above
	err = m.Call(ctx, export, in, func(stdout []byte) error {
		if debug {
			debugOut = bytes.Clone(stdout)
		}
		out, err := decodeEnvelope(stdout)
		if err != nil {
			return err
		}
		if out.Error != "" {
			moduleErr = out.Error
			return nil
		}
		if err := json.Unmarshal(out.Response, response); err != nil {
			return &wasm.CallError{Kind: wasm.KindInvalidJSON, Err: fmt.Errorf("response: %w", err)}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if moduleErr != "" {
		return m.Fail(export, wasm.KindModuleError, errors.New(moduleErr))
	}
	return nil
}

func decodeEnvelope(stdout []byte) (*envelopeOut, error) {
	var out envelopeOut
	// One json.Unmarshal: it rejects anything after the document too. A json.Decoder (which
	// copies the input and scans it once more) only runs to name what is wrong: decoding an
	// answer took twice as long with it.
	if err := json.Unmarshal(stdout, &out); err != nil {
		return nil, envelopeError(stdout, err)
	}
	if out.Error == "" && (len(out.Response) == 0 || bytes.Equal(out.Response, []byte("null"))) {
		return nil, &wasm.CallError{Kind: wasm.KindMissingResponse, Err: errors.New(`the envelope has neither "response" nor "error"`)}
	}
	return &out, nil
}

// envelopeError says why stdout, which json.Unmarshal refused with err, is not one envelope.
func envelopeError(stdout []byte, err error) error {
	dec := json.NewDecoder(bytes.NewReader(stdout))
	var out envelopeOut
	switch derr := dec.Decode(&out); {
	case derr == io.EOF:
		return &wasm.CallError{Kind: wasm.KindInvalidJSON, Err: errors.New("the module wrote nothing to stdout")}
	case derr != nil:
		err = derr
	default:
		if _, terr := dec.Token(); terr != io.EOF {
			return &wasm.CallError{Kind: wasm.KindInvalidJSON, Err: errors.New("stdout holds more than one JSON document")}
		}
	}
	return &wasm.CallError{Kind: wasm.KindInvalidJSON, Err: fmt.Errorf("stdout is not a JSON envelope: %w", err)}
}

// RedactTokens returns a JSON document with the value of every "token" field replaced by
// "<redacted>", for logs: TokenReviews carry bearer tokens in spec.token, and a module may echo
// them. The values of secrets (the token a module was sent) are also replaced wherever they
// appear. Anything that is not JSON is replaced as a whole.
func RedactTokens(doc []byte, secrets ...string) string {
	if len(doc) == 0 {
		return ""
	}
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return fmt.Sprintf("<%d bytes, not JSON>", len(doc))
	}
	redact(v)
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "<unprintable>"
	}
	return RedactText(strings.TrimSuffix(out.String(), "\n"), secrets...)
}

// Redacted replaces a secret's value in logs and messages.
const Redacted = "<redacted>"

// RedactText returns s with every occurrence of each secret replaced by "<redacted>": as it is,
// and as JSON and Go quoting escape it (how it appears inside a quoted string). Empty secrets
// are ignored.
func RedactText(s string, secrets ...string) string {
	for _, secret := range secrets {
		for _, form := range secretForms(secret) {
			s = strings.ReplaceAll(s, form, Redacted)
		}
	}
	return s
}

// secretForms are the ways secret may be written in text: raw, JSON-escaped (with and without
// HTML escaping) and Go-quoted, longest first.
func secretForms(secret string) []string {
	if secret == "" {
		return nil
	}
	forms := []string{secret}
	add := func(f string) {
		if f != "" && !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(secret)
	unquote := func(q string) string { return q[1 : len(q)-1] }
	add(unquote(strings.TrimSuffix(b.String(), "\n")))
	if j, err := json.Marshal(secret); err == nil {
		add(unquote(string(j)))
	}
	add(unquote(strconv.Quote(secret)))
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	return forms
}

// RedactError returns err with the values of secrets redacted from its text. A *CallError
// stays one (module, export, kind and exit code kept), with its stderr and cause redacted; the
// cause is then a plain error (its chain held the secret). Errors that do not mention a secret
// are returned as they are.
func RedactError(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if RedactText(msg, secrets...) == msg {
		return err
	}
	var ce *wasm.CallError
	if errors.As(err, &ce) && error(ce) == err {
		c := *ce
		c.Stderr = RedactText(c.Stderr, secrets...)
		if c.Err != nil {
			c.Err = errors.New(RedactText(c.Err.Error(), secrets...))
		}
		return &c
	}
	return errors.New(RedactText(msg, secrets...))
}

func redact(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if k == "token" {
				t[k] = "<redacted>"
				continue
			}
			redact(e)
		}
	case []any:
		for _, e := range t {
			redact(e)
		}
	}
}
