// Command faults is a test module that misbehaves on request: its settings {"mode": ...} pick
// what the validate export does. Without settings it echoes its whole input as the response, so
// tests can see exactly what the host sent.
package main

import (
	"encoding/base64"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/wasmkube/wasmkube/wasm/guest"
)

func main() {}

var calls int

//go:wasmexport validate
func validate() {
	in, _ := io.ReadAll(os.Stdin)
	env := guest.JSON(in)
	mode := env.Get("settings", "mode").String()
	calls++
	switch mode {
	case "":
		write(`{"response":` + string(in) + `}`)
	case "count": // how many calls this instance has served
		write(`{"response":{"calls":` + itoa(calls) + `}}`)
	case "error":
		write(`{"error":"the module says no"}`)
	case "garbage":
		write(`this is not json`)
	case "two-documents":
		write(`{"response":{}} {"response":{}}`)
	case "no-response":
		write(`{}`)
	case "nothing":
	case "huge":
		write(`{"response":"` + strings.Repeat("x", 8<<20) + `"}`)
	case "exit3":
		os.Stderr.WriteString("exiting with 3\n")
		os.Exit(3)
	case "trap":
		os.Stderr.WriteString("about to trap\n")
		runtime.Breakpoint()
	case "loop":
		for {
			calls++
		}
	case "sleep":
		time.Sleep(time.Hour)
		write(`{"response":{}}`)
	case "memory":
		var hoard [][]byte
		for {
			hoard = append(hoard, make([]byte, 1<<20))
		}
	case "env": // the environment variable settings.name
		write(`{"response":{"value":"` + os.Getenv(env.Get("settings", "name").String()) + `"}}`)
	case "file": // the first line of the file settings.path
		b, err := os.ReadFile(env.Get("settings", "path").String())
		if err != nil {
			write(`{"error":"read: ` + strings.ReplaceAll(err.Error(), `"`, `'`) + `"}`)
			return
		}
		write(`{"response":{"value":"` + strings.SplitN(string(b), "\n", 2)[0] + `"}}`)
	case "slow": // about 50 ms of work
		deadline := time.Now().Add(50 * time.Millisecond)
		for time.Now().Before(deadline) {
		}
		write(`{"response":{"slow":true}}`)
	case "increment": // a mutating module: annotation wasmkube.dev/count = what it saw + 1
		review := env.Get("request", "request")
		seen := review.Get("object", "metadata", "annotations", "wasmkube.dev/count").String()
		n, _ := strconv.Atoi(seen)
		patch := `[{"op":"add","path":"/metadata/annotations","value":{"wasmkube.dev/count":"` + itoa(n+1) + `"}}]`
		write(`{"response":{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"` + review.Get("uid").String() +
			`","allowed":true,"patchType":"JSONPatch","patch":"` + base64.StdEncoding.EncodeToString([]byte(patch)) + `"}}}`)
	case "expect": // a validating module: allowed when wasmkube.dev/count is settings.count
		review := env.Get("request", "request")
		got, want := review.Get("object", "metadata", "annotations", "wasmkube.dev/count").String(), env.Get("settings", "count").String()
		status := `"allowed":true`
		if got != want {
			status = `"allowed":false,"status":{"code":422,"message":"count is '` + got + `', want '` + want + `'"}`
		}
		write(`{"response":{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"` + review.Get("uid").String() + `",` + status + `}}}`)
	case "chaos": // an admission module that fails as the object's name says: -trap-, -loop-, -memory-
		review := env.Get("request", "request")
		switch name := review.Get("name").String(); {
		case strings.Contains(name, "-trap-"):
			runtime.Breakpoint()
		case strings.Contains(name, "-loop-"):
			for {
				calls++
			}
		case strings.Contains(name, "-memory-"):
			var hoard [][]byte
			for {
				hoard = append(hoard, make([]byte, 1<<20))
			}
		}
		write(`{"response":{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"` + review.Get("uid").String() + `","allowed":true}}}`)
	default:
		write(`{"error":"unknown mode ` + mode + `"}`)
	}
}

// authz denies every request with settings {"mode": "deny"}, fails with {"mode": "error"},
// answers allowed and denied both true with {"mode": "allow-and-deny"} (for the user
// settings.user only, when set) and has no opinion otherwise.
//
//go:wasmexport authz
func authz() {
	in, _ := io.ReadAll(os.Stdin)
	env := guest.JSON(in)
	switch env.Get("settings", "mode").String() {
	case "allow-and-deny":
		if u := env.Get("settings", "user").String(); u == "" || u == env.Get("request", "spec", "user").String() {
			write(`{"response":{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","status":{"allowed":true,"denied":true,"reason":"the faults module allows and denies"}}}`)
			return
		}
		write(`{"response":{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","status":{"allowed":false}}}`)
	case "deny":
		write(`{"response":{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","status":{"allowed":false,"denied":true,"reason":"the faults module denies everything"}}}`)
	case "error":
		write(`{"error":"the module says no"}`)
	default:
		if misbehave(env.Get("settings", "mode").String()) {
			return
		}
		write(`{"response":{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","status":{"allowed":false}}}`)
	}
}

// misbehave fails as mode says, for the authn and authz exports: trap, loop, memory, exit3,
// garbage, nothing; it reports whether it did.
func misbehave(mode string) bool {
	switch mode {
	case "trap":
		runtime.Breakpoint()
	case "loop":
		for {
			calls++
		}
	case "memory":
		var hoard [][]byte
		for {
			hoard = append(hoard, make([]byte, 1<<20))
		}
	case "exit3":
		os.Exit(3)
	case "garbage":
		write(`{"response": not json`)
	case "nothing":
	default:
		return false
	}
	return true
}

// authn leaks the token it is sent, as a careless module would: with settings
// {"mode": "echo-token"} it writes it to stderr and answers an error that quotes it; with
// {"mode": "echo-token-exit"} it writes it to stderr and exits with code 3. Otherwise it
// authenticates nobody.
//
//go:wasmexport authn
func authn() {
	in, _ := io.ReadAll(os.Stdin)
	env := guest.JSON(in)
	token := env.Get("request", "spec", "token").String()
	switch env.Get("settings", "mode").String() {
	case "echo-token":
		os.Stderr.WriteString("checking token " + token + "\n")
		write(`{"error":"unknown token ` + token + `"}`)
	case "echo-token-exit":
		os.Stderr.WriteString("giving up on token " + token + "\n")
		os.Exit(3)
	case "no-username": // authenticated, but as nobody
		write(`{"response":{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":true,"user":{"groups":["system:masters"]}}}}`)
	case "error-and-user": // an error with a user: the error wins
		write(`{"error":"the module says no","response":{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":true,"user":{"username":"mallory"}}}}`)
	default:
		if misbehave(env.Get("settings", "mode").String()) {
			return
		}
		write(`{"response":{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":false}}}`)
	}
}

func write(s string) { _, _ = os.Stdout.WriteString(s) }

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
