package envelope_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/hook"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
)

// TestAuthenticateRedactsToken: a module that echoes the token it is sent into its error
// answer or its stderr (and its output, logged with debug) never gets the token into the error
// that ReviewToken returns, nor hook.Authenticate (the API server's call) on top of it, nor into
// the log.
func TestAuthenticateRedactsToken(t *testing.T) {
	const token = "s3cr3t-t0ken-value"
	var logs bytes.Buffer
	r := faultsRuntime(t, wasm.RuntimeConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	m := wasmtest.Load(t, r, wasmtest.Faults(t), wasm.ModuleConfig{Name: "leaky", Exports: []string{envelope.ExportAuthn}, PoolSize: 1, Debug: true})
	calls := map[string]func(settings json.RawMessage) error{
		"ReviewToken": func(settings json.RawMessage) error {
			review := authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}
			_, err := envelope.ReviewToken(context.Background(), m, settings, &review)
			return err
		},
		"hook.Authenticate": func(settings json.RawMessage) error {
			_, ok, err := hook.Authenticate(context.Background(), hook.Module{Module: m, Settings: settings}, token, nil)
			if ok {
				t.Error("authenticated")
			}
			return err
		},
	}
	for name, call := range calls {
		for mode, kind := range map[string]wasm.ErrorKind{"echo-token": wasm.KindModuleError, "echo-token-exit": wasm.KindExit} {
			logs.Reset()
			err := call(settings(mode))
			if !wasm.IsKind(err, kind) {
				t.Fatalf("%s %s: %v, want a %s error", name, mode, err, kind)
			}
			var ce *wasm.CallError
			errors.As(err, &ce)
			for what, text := range map[string]string{"error": err.Error(), "stderr": ce.Stderr, "log": logs.String()} {
				if strings.Contains(text, token) {
					t.Errorf("%s %s: the token is in the %s: %s", name, mode, what, text)
				}
			}
			if !strings.Contains(err.Error(), envelope.Redacted) || ce.Module != "leaky" {
				t.Errorf("%s %s: error %q (module %q), want the token's place marked %s", name, mode, err, ce.Module, envelope.Redacted)
			}
			if !strings.Contains(logs.String(), "output=") {
				t.Errorf("%s %s: no debug log: %s", name, mode, logs.String())
			}
		}
	}
}

func TestRedactText(t *testing.T) {
	for secret, text := range map[string]string{
		"plain":      `token plain, "plain"`,
		`a"b\c`:      `raw a"b\c, JSON "a\"b\\c"`,
		"<x&y>":      `raw <x&y>, JSON "\u003cx\u0026y\u003e"`,
		"tab\tthere": `raw tab	there, quoted "tab\tthere"`,
	} {
		got := envelope.RedactText(text, secret)
		if strings.Count(got, envelope.Redacted) != 2 {
			t.Errorf("%q in %q: %q, want both occurrences redacted", secret, text, got)
		}
	}
	if got := envelope.RedactText("nothing to hide", ""); got != "nothing to hide" {
		t.Errorf("empty secret: %q", got)
	}
	plain := errors.New("no secret here")
	if envelope.RedactError(plain, "token") != plain {
		t.Error("an error without the secret must be returned as it is")
	}
}
