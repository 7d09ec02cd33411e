package envelope

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestAuthenticateRedactsToken: a module that echoes the token it is sent into its error
// answer or its stderr (and its output, logged with debug) never gets the token into the error
// Authenticate returns, nor into the log.
func TestAuthenticateRedactsToken(t *testing.T) {
	const token = "s3cr3t-t0ken-value"
	var logs bytes.Buffer
	r, err := NewRuntime(context.Background(), RuntimeConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	m := load(t, r, ModuleConfig{Name: "leaky", Exports: []string{ExportAuthn}, PoolSize: 1, Debug: true})
	for mode, kind := range map[string]ErrorKind{"echo-token": KindModuleError, "echo-token-exit": KindExit} {
		logs.Reset()
		_, ok, err := m.Authenticate(context.Background(), settings(mode), token, nil)
		if ok || !IsKind(err, kind) {
			t.Fatalf("%s: %v %v, want a %s error", mode, ok, err, kind)
		}
		var ce *CallError
		errors.As(err, &ce)
		for what, text := range map[string]string{"error": err.Error(), "stderr": ce.Stderr, "log": logs.String()} {
			if strings.Contains(text, token) {
				t.Errorf("%s: the token is in the %s: %s", mode, what, text)
			}
		}
		if !strings.Contains(err.Error(), Redacted) || ce.Module != "leaky" {
			t.Errorf("%s: error %q (module %q), want the token's place marked %s", mode, err, ce.Module, Redacted)
		}
		if !strings.Contains(logs.String(), "output=") {
			t.Errorf("%s: no debug log: %s", mode, logs.String())
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
		got := RedactText(text, secret)
		if strings.Count(got, Redacted) != 2 {
			t.Errorf("%q in %q: %q, want both occurrences redacted", secret, text, got)
		}
	}
	if got := RedactText("nothing to hide", ""); got != "nothing to hide" {
		t.Errorf("empty secret: %q", got)
	}
	plain := errors.New("no secret here")
	if RedactError(plain, "token") != plain {
		t.Error("an error without the secret must be returned as it is")
	}
}
