// Command hmac-authn authenticates tokens signed with a shared secret, so a platform team can
// hand out short-lived credentials without running an identity provider:
//
//	token   = "v1." + base64url(payload) + "." + base64url(HMAC-SHA256(secret, "v1." + base64url(payload)))
//	payload = {"sub": "alice", "uid": "1001", "groups": ["dev"], "exp": 1798761600}
//
// Settings: {"secret": "…", "issuer": "platform"}; with issuer set, the payload's "iss" must
// match. Tokens that do not start with "v1." are left to other authenticators; a v1 token with a
// bad signature, a bad payload or a past expiry is refused.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/authn"
)

func main() {}

func init() { authn.Handle(decodeSettings, authenticate) }

// Settings is the module's configuration.
type Settings struct {
	Secret []byte
	Issuer string
}

func decodeSettings(raw guest.JSON) (Settings, error) {
	return Settings{Secret: []byte(raw.Get("secret").String()), Issuer: raw.Get("issuer").String()}, nil
}

func authenticate(r authn.Request, s Settings) authn.Response {
	if !strings.HasPrefix(r.Token, "v1.") {
		return authn.Unauthenticated()
	}
	if len(s.Secret) == 0 {
		return authn.Failed("hmac-authn has no secret in its settings")
	}
	signed, sig, ok := strings.Cut(r.Token[len("v1."):], ".")
	if !ok {
		return authn.Unauthenticated()
	}
	mac := hmac.New(sha256.New, s.Secret)
	mac.Write([]byte("v1." + signed))
	want := mac.Sum(nil)
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig) // strict: one encoding per signature
	if err != nil || !hmac.Equal(got, want) {
		return authn.Unauthenticated()
	}
	payload, err := base64.RawURLEncoding.DecodeString(signed)
	if err != nil {
		return authn.Unauthenticated()
	}
	p := guest.JSON(payload)
	sub := p.Get("sub").String()
	exp := p.Get("exp").Int()
	switch {
	case !p.Valid() || sub == "":
		return authn.Unauthenticated()
	case exp == 0 || time.Now().Unix() >= exp:
		return authn.Unauthenticated()
	case s.Issuer != "" && p.Get("iss").String() != s.Issuer:
		return authn.Unauthenticated()
	}
	return authn.Authenticated(authn.User{
		Username: sub,
		UID:      p.Get("uid").String(),
		Groups:   p.Get("groups").Strings(),
		Extra:    map[string][]string{"hmac-authn/expires": {time.Unix(exp, 0).UTC().Format(time.RFC3339)}},
	})
}
