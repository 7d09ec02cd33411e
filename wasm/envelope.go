package wasm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
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

// CallEnvelope sends request (and settings, omitted when nil) to export and decodes the
// module's response into response.
//
// # Notes
//
//   - stdout must hold exactly one JSON document; anything else is KindInvalidJSON.
//   - A non-empty "error" is KindModuleError; neither "response" nor "error" is KindMissingResponse.
//   - With ModuleConfig.Debug, input and output are logged with RedactTokens.
func (m *Module) CallEnvelope(ctx context.Context, export string, request any, settings json.RawMessage, response any) (err error) {
	in, err := json.Marshal(envelopeIn{Request: request, Settings: settings})
	if err != nil {
		return fmt.Errorf("module %q: encode request: %w", m.cfg.Name, err)
	}
	var moduleErr string
	var debugOut []byte
	if m.cfg.Debug {
		defer func() {
			m.logger.Info("module call", "module", m.cfg.Name, "export", export, "input", RedactTokens(in), "output", RedactTokens(debugOut), "err", err)
		}()
	}
	err = m.Call(ctx, export, in, func(stdout []byte) error {
		if m.cfg.Debug {
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
			return &CallError{Kind: KindInvalidJSON, Err: fmt.Errorf("response: %w", err)}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if moduleErr != "" {
		return m.callError(export, KindModuleError, errors.New(moduleErr))
	}
	return nil
}

func decodeEnvelope(stdout []byte) (*envelopeOut, error) {
	dec := json.NewDecoder(bytes.NewReader(stdout))
	var out envelopeOut
	if err := dec.Decode(&out); err != nil {
		if err == io.EOF {
			return nil, &CallError{Kind: KindInvalidJSON, Err: errors.New("the module wrote nothing to stdout")}
		}
		return nil, &CallError{Kind: KindInvalidJSON, Err: fmt.Errorf("stdout is not a JSON envelope: %w", err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &CallError{Kind: KindInvalidJSON, Err: errors.New("stdout holds more than one JSON document")}
	}
	if out.Error == "" && (len(out.Response) == 0 || bytes.Equal(out.Response, []byte("null"))) {
		return nil, &CallError{Kind: KindMissingResponse, Err: errors.New(`the envelope has neither "response" nor "error"`)}
	}
	return &out, nil
}

// RedactTokens returns a JSON document with the value of every "token" field replaced by
// "<redacted>", for logs: TokenReviews carry bearer tokens in spec.token, and a module may echo
// them. Anything that is not JSON is replaced as a whole.
func RedactTokens(doc []byte) string {
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
	return strings.TrimSuffix(out.String(), "\n")
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
