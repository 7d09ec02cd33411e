package kubewarden

import (
	"errors"
	"testing"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/review"
)

func TestServe(t *testing.T) {
	p := Policy[string]{
		Settings: func(raw guest.JSON) (string, error) { return raw.Get("word").String(), nil },
		ValidateSettings: func(word string) error {
			if word == "" {
				return errors.New("settings.word is required")
			}
			return nil
		},
		Validate: func(r *review.Request, word string) Response {
			switch r.Name {
			case "panic":
				panic("boom")
			case word:
				return Mutate([]byte(`{"kind":"ConfigMap"}`)).WithWarnings("w1").WithAuditAnnotation("k", "v")
			}
			return Reject("not "+word, 418)
		},
	}
	cases := []struct{ op, payload, want string }{
		{"protocol_version", "", `"v1"`},
		{"validate_settings", `{"word":"x"}`, `{"valid":true}`},
		{"validate_settings", `{}`, `{"valid":false,"message":"settings.word is required"}`},
		{"validate", `{"request":{"name":"x"},"settings":{"word":"x"}}`, `{"accepted":true,"mutated_object":{"kind":"ConfigMap"},"warnings":["w1"],"audit_annotations":{"k":"v"}}`},
		{"validate", `{"request":{"name":"y"},"settings":{"word":"x"}}`, `{"accepted":false,"message":"not x","code":418}`},
		{"validate", `{"request":{"name":"panic"},"settings":{"word":"x"}}`, `{"accepted":false,"message":"the policy panicked: boom","code":500}`},
	}
	for _, c := range cases {
		out, err := p.Serve(c.op, []byte(c.payload))
		if err != nil || string(out) != c.want {
			t.Errorf("%s %s: %s %v, want %s", c.op, c.payload, out, err, c.want)
		}
	}
	if _, err := p.Serve("nope", nil); err == nil {
		t.Error("unknown operation accepted")
	}
}
