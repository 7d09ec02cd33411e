// Package guest is the Go SDK for wasmkube modules: a module author writes one typed handler per
// hook and registers it with the hook's package (authn, authz, admission); that package exports
// the function the host calls (authn, authz, validate), reads the envelope from stdin, decodes
// the settings with the author's decoder, and writes the answer to stdout.
//
// Build a module with standard Go:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -ldflags="-s -w -buildid=" -o mod.wasm .
//
// # Notes
//
//   - The SDK reads and writes JSON itself (types JSON and Writer), without encoding/json,
//     reflect or fmt: those add ~1 MB to every module and most of the time of a call. Objects
//     stay raw JSON until a handler looks into them. A module that wants encoding/json for its
//     settings uses package guest/stdjson and pays for it.
//   - Settings are decoded once and reused while the host sends the same settings.
package guest

import (
	"errors"
	"io"
)

// Settings decodes a module's settings into S.
type Settings[S any] func(JSON) (S, error)

// NoSettings is the decoder of a module without settings.
func NoSettings(JSON) (struct{}, error) { return struct{}{}, nil }

// settingsCache keeps the last decoded settings: the host sends the same ones with every call.
type settingsCache[S any] struct {
	raw   string
	value S
	ok    bool
}

func (c *settingsCache[S]) get(raw JSON, decode Settings[S]) (S, error) {
	if c.ok && c.raw == string(raw) {
		return c.value, nil
	}
	v, err := decode(raw)
	if err != nil {
		var zero S
		return zero, errors.New("decode settings: " + err.Error())
	}
	c.raw, c.value, c.ok = string(raw), v, true
	return v, nil
}

// Handler turns a request (the envelope's "request") and settings into the response JSON.
type Handler[S any] func(request JSON, settings S) (*Writer, error)

// answer reads one envelope from in, decodes the settings (or takes them from cache), calls h
// and writes the answer to out. An error or a panic in h answers {"error": "..."}.
func answer[S any](in io.Reader, out io.Writer, decode Settings[S], cache *settingsCache[S], h Handler[S]) {
	w, err := serve(in, decode, cache, h)
	var env Writer
	env.ObjectStart()
	if err != nil {
		env.Key("error").String(err.Error())
	} else {
		env.Key("response").Raw(w.Bytes())
	}
	env.ObjectEnd()
	_, _ = out.Write(env.Bytes())
}

func serve[S any](in io.Reader, decode Settings[S], cache *settingsCache[S], h Handler[S]) (w *Writer, err error) {
	defer func() {
		if r := recover(); r != nil {
			w, err = nil, panicError(r)
		}
	}()
	data, err := readAll(in)
	if err != nil {
		return nil, errors.New("read stdin: " + err.Error())
	}
	env := JSON(data)
	if !env.Valid() || !env.IsObject() {
		return nil, errors.New("stdin is not a JSON envelope")
	}
	var request, rawSettings JSON
	env.rawFields(func(k, v JSON) bool {
		switch {
		case keyIs(k, "request"):
			request = v
		case keyIs(k, "settings"):
			rawSettings = v
		}
		return true
	})
	settings, err := cache.get(rawSettings, decode)
	if err != nil {
		return nil, err
	}
	return h(request, settings)
}

// Hook is a registered handler of one hook, with its settings decoder and cache.
type Hook struct{ serve func(io.Reader, io.Writer) }

// Register makes a Hook from a settings decoder and a handler.
func Register[S any](decode Settings[S], h Handler[S]) *Hook {
	cache := &settingsCache[S]{}
	return &Hook{serve: func(in io.Reader, out io.Writer) { answer(in, out, decode, cache, h) }}
}

// Run answers one call with the hook, or says that no handler was registered.
func (hk *Hook) Run(in io.Reader, out io.Writer) {
	if hk == nil {
		answer(in, out, NoSettings, &settingsCache[struct{}]{}, func(JSON, struct{}) (*Writer, error) {
			return nil, errors.New("the module registered no handler for this hook (call Handle in init)")
		})
		return
	}
	hk.serve(in, out)
}

// panicError describes a recovered panic without fmt.
func panicError(r any) error {
	switch v := r.(type) {
	case error:
		return errors.New("panic: " + v.Error())
	case string:
		return errors.New("panic: " + v)
	}
	return errors.New("panic in handler")
}

// inbuf is reused from call to call: an instance serves one call at a time, and values handed to
// a handler are valid only during its call.
var inbuf []byte

func readAll(in io.Reader) ([]byte, error) {
	b := inbuf[:0]
	if cap(b) == 0 {
		b = make([]byte, 0, 16<<10)
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := in.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			inbuf = b
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
