package wasm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
func (m *Module) CallEnvelope(ctx context.Context, export string, request any, settings json.RawMessage, response any) error {
	in, err := json.Marshal(envelopeIn{Request: request, Settings: settings})
	if err != nil {
		return fmt.Errorf("module %q: encode request: %w", m.cfg.Name, err)
	}
	var moduleErr string
	err = m.Call(ctx, export, in, func(stdout []byte) error {
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
