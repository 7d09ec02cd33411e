package kubewarden_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/version"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/kubewarden/regobuild"
)

// compileRego compiles src (Rego v1, one file) with its METADATA entrypoints, as
// `wasmkube module build-rego` does.
func compileRego(t *testing.T, src string, mode kubewarden.ExecutionMode, entrypoints ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.rego"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := regobuild.Build(context.Background(), regobuild.Options{
		Paths: []string{dir}, Entrypoints: entrypoints, Metadata: &kubewarden.Metadata{ExecutionMode: mode},
	})
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func loadRego(t *testing.T, bin []byte, cfg kubewarden.PolicyConfig) (*kubewarden.Policy, error) {
	t.Helper()
	if cfg.Module.Name == "" {
		cfg.Module.Name = "rego"
	}
	cfg.Module.PoolSize = max(cfg.Module.PoolSize, 1)
	p, err := kubewarden.Load(context.Background(), wasmtest.Runtime(t), bin, cfg)
	if err == nil {
		t.Cleanup(func() { p.Close(context.Background()) })
	}
	return p, err
}

func pod(image string) *admissionv1.AdmissionRequest {
	req := request(admissionv1.Create, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default"},"spec":{"containers":[{"name":"web","image":"`+image+`"}]}}`)
	req.Kind.Kind = "Pod"
	return req
}

func namespace(labels string) *admissionv1.AdmissionRequest {
	req := request(admissionv1.Create, `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a","labels":`+labels+`}}`)
	req.Kind.Kind, req.Namespace = "Namespace", ""
	return req
}

// TestRegoModes runs the two Rego examples, OPA mode and Gatekeeper mode, through both
// evaluation paths of the ABI: opa_eval (1.2) and the opa_eval_ctx_* sequence (1.1).
func TestRegoModes(t *testing.T) {
	cases := []struct {
		example, settings string
		mode              kubewarden.ExecutionMode
		req               *admissionv1.AdmissionRequest
		allowed           bool
		message           string
	}{
		{"no-latest-tag", `{"allowedRegistries":[]}`, kubewarden.ModeOPA, pod("nginx:1.27"), true, ""},
		{"no-latest-tag", `{"allowedRegistries":[]}`, kubewarden.ModeOPA, pod("nginx"), false, "container web: image nginx has no tag or the tag latest; name a version or a digest"},
		{"no-latest-tag", `{"allowedRegistries":["ghcr.io/acme"]}`, kubewarden.ModeOPA, pod("nginx:1.27"), false, "container web: image nginx:1.27 is not from an allowed registry (ghcr.io/acme)"},
		{"required-labels", `{"labels":["owner"]}`, kubewarden.ModeGatekeeper, namespace(`{"owner":"me"}`), true, ""},
		{"required-labels", `{"labels":["owner","team"]}`, kubewarden.ModeGatekeeper, namespace(`{}`), false, `Namespace team-a has no label "owner", Namespace team-a has no label "team"`},
	}
	for _, c := range cases {
		p, err := loadRego(t, example(t, c.example), kubewarden.PolicyConfig{Settings: json.RawMessage(c.settings)})
		if err != nil {
			t.Fatal(err)
		}
		// A fresh instance per call: the result is read before the instance is closed.
		fresh, err := loadRego(t, example(t, c.example), kubewarden.PolicyConfig{Settings: json.RawMessage(c.settings), Module: wasm.ModuleConfig{Isolation: wasm.Fresh}})
		if err != nil {
			t.Fatal(err)
		}
		if res, err := fresh.Admit(context.Background(), review(c.req), false); err != nil || res.Allowed != c.allowed {
			t.Errorf("%s, fresh instances: %+v %v", c.example, res, err)
		}
		if p.Mode() != c.mode || !OneShotAtLoad(p) {
			t.Fatalf("%s: mode %s, one-shot %v; want %s and opa_eval (the compiler makes ABI 1.3)", c.example, p.Mode(), OneShotAtLoad(p), c.mode)
		}
		if got := strings.Join(p.RegoBuiltins(), ","); !strings.Contains(got, "sprintf") {
			t.Errorf("%s: builtins on the host %q, want sprintf among them", c.example, got)
		}
		for _, oneShot := range []bool{true, false} {
			kubewarden.SetOneShot(p, oneShot)
			for range 3 { // the heap is reset between evaluations: the same answer each time
				res, err := p.Admit(context.Background(), review(c.req), false)
				if err != nil {
					t.Fatalf("%s (one-shot %v): %v", c.example, oneShot, err)
				}
				msg := ""
				if res.Result != nil {
					msg = res.Result.Message
				}
				if res.Allowed != c.allowed || msg != c.message || res.UID != c.req.UID {
					t.Errorf("%s (one-shot %v): allowed %v %q uid %q, want %v %q %q", c.example, oneShot, res.Allowed, msg, res.UID, c.allowed, c.message, c.req.UID)
				}
			}
		}
	}
}

// OneShotAtLoad says what Load chose for p.
func OneShotAtLoad(p *kubewarden.Policy) bool { return kubewarden.OneShot(p) }

// TestRegoRefusesBuiltinsItCannotGive: a policy that needs http.send (the network) or a builtin
// OPA does not implement does not load, and the error names each.
func TestRegoRefusesBuiltinsItCannotGive(t *testing.T) {
	bin := compileRego(t, `package policy

# METADATA
# entrypoint: true
violation contains {"msg": r.body} if {
	r := http.send({"method": "GET", "url": input.review.object.metadata.name})
}

violation contains {"msg": "dns"} if net.lookup_ip_addr(input.review.name)

violation contains {"msg": "schema"} if {
	[ok, _] := json.match_schema(input.review.object, {"$ref": "file:///etc/passwd"})
	not ok
}

violation contains {"msg": strings.render_template("{{.x}}", {"x": 1})} if true
`, kubewarden.ModeGatekeeper)
	_, err := loadRego(t, bin, kubewarden.PolicyConfig{})
	for _, want := range []string{`policy "rego": the policy needs builtins the host cannot give it:`, "http.send (it reaches the network", "net.lookup_ip_addr (",
		"json.match_schema (a schema's $ref is fetched from files and URLs)", "strings.render_template ("} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("load: %v\nwant %q", err, want)
		}
	}
	// The DNS capability allows net.lookup_ip_addr; http.send stays refused.
	_, err = loadRego(t, bin, kubewarden.PolicyConfig{Grants: kubewarden.PolicyGrants{HostCapabilities: []string{"net/v1/dns_lookup_host"}}})
	if err == nil || !strings.Contains(err.Error(), "http.send") || strings.Contains(err.Error(), "net.lookup_ip_addr") {
		t.Errorf("with net/v1/dns_lookup_host granted: %v", err)
	}
}

// TestRegoEntrypoints: an entrypoint by name; an unknown one is refused naming those there are;
// Gatekeeper mode defaults to violation, OPA mode to the first.
func TestRegoEntrypoints(t *testing.T) {
	bin := compileRego(t, `package policy

first := {"response": {"allowed": true}}

violation contains {"msg": "always"} if true
`, kubewarden.ModeOPA, "policy/first", "policy/violation")
	p, err := loadRego(t, bin, kubewarden.PolicyConfig{})
	if err != nil || p.Entrypoint() != "policy/first" {
		t.Fatalf("OPA default: %v %q", err, p.Entrypoint())
	}
	if got := strings.Join(p.RegoEntrypoints(), ","); got != "policy/first,policy/violation" {
		t.Errorf("entrypoints %q", got)
	}
	p, err = loadRego(t, bin, kubewarden.PolicyConfig{Mode: kubewarden.ModeGatekeeper})
	if err != nil || p.Entrypoint() != "policy/violation" {
		t.Fatalf("Gatekeeper default: %v %q", err, p.Entrypoint())
	}
	if res, err := p.Admit(context.Background(), review(namespace(`{}`)), false); err != nil || res.Allowed || res.Result.Message != "always" {
		t.Errorf("violation: %+v %v", res, err)
	}
	_, err = loadRego(t, bin, kubewarden.PolicyConfig{Entrypoint: "policy/nope"})
	if err == nil || !strings.Contains(err.Error(), `no entrypoint "policy/nope"; it has policy/first, policy/violation`) {
		t.Errorf("unknown entrypoint: %v", err)
	}
	_, err = loadRego(t, example(t, "safe-annotations"), kubewarden.PolicyConfig{Entrypoint: "policy/violation", Settings: json.RawMessage(`{}`)})
	if err == nil || !strings.Contains(err.Error(), "only Rego policies (executionMode opa or gatekeeper) have entrypoints") {
		t.Errorf("entrypoint for a waPC policy: %v", err)
	}
	_, err = loadRego(t, bin, kubewarden.PolicyConfig{Settings: json.RawMessage(`[1]`)})
	if err == nil || !strings.Contains(err.Error(), "settings must be a JSON object") {
		t.Errorf("settings not an object: %v", err)
	}
}

// TestRegoAnswers: what an OPA-mode policy answers is checked: no response or an undefined
// result is the policy's failure; a patch from a policy that may not mutate is a denial; the
// uid is the request's whatever the policy says.
func TestRegoAnswers(t *testing.T) {
	bin := compileRego(t, `package policy

import rego.v1

# METADATA
# entrypoint: true
main := {"response": {"uid": "forged", "allowed": true, "patchType": "JSONPatch", "patch": base64.encode(`+"`"+`[{"op":"add","path":"/metadata/labels/x","value":"y"}]`+"`"+`), "warnings": ["w"]}} if input.request.name == "patch"

main := {"nothing": true} if input.request.name == "shape"
`, kubewarden.ModeOPA)
	p, err := loadRego(t, bin, kubewarden.PolicyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	req := namespace(`{}`)
	req.Name = "patch"
	res, err := p.Admit(context.Background(), review(req), true)
	if err != nil || !res.Allowed || res.UID != req.UID || res.PatchType == nil || !bytes.Contains(res.Patch, []byte(`"/metadata/labels/x"`)) || len(res.Warnings) != 1 {
		t.Errorf("mutating: %+v %v", res, err)
	}
	res, err = p.Admit(context.Background(), review(req), false)
	if err != nil || res.Allowed || !strings.Contains(res.Result.Message, "not allowed to mutate") {
		t.Errorf("not mutating: %+v %v", res, err)
	}
	req.Name = "shape"
	_, err = p.Admit(context.Background(), review(req), false)
	wasmtest.WantCallError(t, err, "rego", "validate", wasm.KindInvalidResponse)
	// A Gatekeeper result that is not a list of violations is no answer, not an empty list.
	gk, err := loadRego(t, compileRego(t, "package p\n\n# METADATA\n# entrypoint: true\nviolation := null\n", kubewarden.ModeGatekeeper), kubewarden.PolicyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = gk.Admit(context.Background(), review(req), false)
	wasmtest.WantCallError(t, err, "rego", "validate", wasm.KindInvalidResponse)
	req.Name = "other"
	_, err = p.Admit(context.Background(), review(req), false)
	wasmtest.WantCallError(t, err, "rego", "validate", wasm.KindInvalidResponse)
	if err == nil || !strings.Contains(err.Error(), "entrypoint policy/main is undefined for this request") {
		t.Errorf("undefined: %v", err)
	}
}

// TestRegoPrint: print() in a policy goes to the policy's log.
func TestRegoPrint(t *testing.T) {
	bin := compileRego(t, `package policy

# METADATA
# entrypoint: true
violation contains {"msg": "x"} if {
	print("looking at", input.review.object.metadata.name)
	false
}
`, kubewarden.ModeGatekeeper)
	var log bytes.Buffer
	p, err := loadRego(t, bin, kubewarden.PolicyConfig{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := p.Admit(context.Background(), review(namespace(`{}`)), false); err != nil || !res.Allowed {
		t.Fatalf("%+v %v", res, err)
	}
	if !strings.Contains(log.String(), `msg="looking at team-a"`) || !strings.Contains(log.String(), "policy=rego") {
		t.Errorf("log: %s", log.String())
	}
}

// TestRegoBounds: a Rego policy is held by the same bounds as any module: an evaluation that
// takes too long is stopped at the timeout, one that allocates past the memory limit fails,
// and the policy answers the next request; an input larger than the memory limit is refused;
// many large inputs in a row fit, as the heap is reset between evaluations.
func TestRegoBounds(t *testing.T) {
	bin := compileRego(t, `package policy

# METADATA
# entrypoint: true
violation contains {"msg": sprintf("%d", [n])} if {
	input.review.name == "slow"
	n := count([x | some x in numbers.range(1, 5000000); x % 7 == 0])
}

violation contains {"msg": "big"} if {
	input.review.name == "big"
	count(numbers.range(1, 100000000)) > 0
}

violation contains {"msg": "no"} if input.review.name == "no"

violation contains {"msg": sprintf("%999999999d", [1])} if input.review.name == "wide"
`, kubewarden.ModeGatekeeper)
	p, err := loadRego(t, bin, kubewarden.PolicyConfig{Module: wasm.ModuleConfig{Timeout: 50 * time.Millisecond, MemoryLimit: 32 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	admit := func(name string) (*admissionv1.AdmissionResponse, error) {
		req := namespace(`{}`)
		req.Name = name
		return p.Admit(context.Background(), review(req), false)
	}
	began := time.Now()
	_, err = admit("slow")
	wasmtest.WantCallError(t, err, "rego", "validate", wasm.KindTimeout)
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("the timeout took %v", d)
	}
	small, err := loadRego(t, bin, kubewarden.PolicyConfig{Module: wasm.ModuleConfig{Name: "small", Timeout: 10 * time.Second, MemoryLimit: 4 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	req := namespace(`{}`)
	req.Name = "big"
	_, err = small.Admit(context.Background(), review(req), false)
	wasmtest.WantCallError(t, err, "small", "validate", wasm.KindMemory)
	// A builtin runs in Go, outside the memory cap: one whose output its arguments blow up is
	// refused before it runs.
	_, err = admit("wide")
	wasmtest.WantCallError(t, err, "rego", "validate", wasm.KindTrap)
	if err == nil || !strings.Contains(err.Error(), "builtin sprintf refused: sprintf: width or precision") {
		t.Errorf("sprintf with a huge width: %v", err)
	}
	if res, err := admit("no"); err != nil || res.Allowed || res.Result.Message != "no" {
		t.Errorf("after the failures: %+v %v", res, err)
	}
	// The same memory limit with room in time: a call parsing 1 MiB of input takes a good share
	// of 50 ms under the race detector, and these calls are about memory.
	roomy, err := loadRego(t, bin, kubewarden.PolicyConfig{Module: wasm.ModuleConfig{Name: "roomy", Timeout: 10 * time.Second, MemoryLimit: 32 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	admitRoomy := func(name string, object string) (*admissionv1.AdmissionResponse, error) {
		req := namespace(`{}`)
		req.Name = name
		req.Object.Raw = []byte(object)
		return roomy.Admit(context.Background(), review(req), false)
	}
	huge := `{"metadata":{"name":"x","annotations":{"a":"` + strings.Repeat("x", 40<<20) + `"}}}`
	_, err = admitRoomy("huge", huge)
	wasmtest.WantCallError(t, err, "roomy", "validate", wasm.KindMemory)
	large := `{"metadata":{"name":"x","annotations":{"a":"` + strings.Repeat("x", 1<<20) + `"}}}`
	for i := range 100 { // 100 MiB of input in all through a 32 MiB memory
		if res, err := admitRoomy("fine", large); err != nil || !res.Allowed {
			t.Fatalf("large input %d: %+v %v", i, res, err)
		}
	}
}

// TestEveryBuiltinIsReviewed: every builtin OPA implements in Go is either on the host's
// allowlist, refused with a reason, or one OPA compiles into modules (left out on purpose); and
// every allowlisted name is one of OPA's. An OPA upgrade that adds a builtin fails here until
// someone decides.
func TestEveryBuiltinIsReviewed(t *testing.T) {
	compiledIn := map[string]bool{"bits.lsh": true, "numbers.range": true, "replace": true, "strings.replace_n": true, "walk": true}
	known := map[string]bool{}
	for _, b := range ast.Builtins {
		if topdown.GetBuiltin(b.Name) == nil || b.IsDeprecated() {
			continue
		}
		known[b.Name] = true
		reviewed, refused := kubewarden.BuiltinReview(b.Name)
		if reviewed == refused && !compiledIn[b.Name] {
			t.Errorf("builtin %s: reviewed %v, refused %v: put it in exactly one of reviewedBuiltins and refusedBuiltins", b.Name, reviewed, refused)
		}
	}
	for _, n := range kubewarden.ReviewedBuiltins() {
		if !known[n] {
			t.Errorf("reviewedBuiltins lists %s, which OPA %s does not implement", n, version.Version)
		}
	}
}

// TestRegoBuiltinGuards: builtins whose output their arguments can blow up are refused before
// they run, and a module that asks the host for a builtin OPA compiles into modules is refused.
func TestRegoBuiltinGuards(t *testing.T) {
	bin := compileRego(t, `package policy

# METADATA
# entrypoint: true
violation contains {"msg": sprintf("%d", [count(net.cidr_expand("10.0.0.0/8"))])} if input.review.name == "cidr"

violation contains {"msg": sprintf("%d", [count(numbers.range_step(0, 100000000, 1))])} if input.review.name == "range"

violation contains {"msg": json.marshal_with_options({"a": [1]}, {"pretty": true, "indent": concat("", [" " | some _ in numbers.range(1, 100)])})} if input.review.name == "indent"

violation contains {"msg": sprintf("%d", [count(net.cidr_expand("10.0.0.0/24"))])} if input.review.name == "small"
`, kubewarden.ModeGatekeeper)
	p, err := loadRego(t, bin, kubewarden.PolicyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"cidr":   "net.cidr_expand: 10.0.0.0/8 has 2^24 addresses",
		"range":  "numbers.range_step: 1e+08 numbers",
		"indent": "json.marshal_with_options: indent of",
	} {
		req := namespace(`{}`)
		req.Name = name
		_, err := p.Admit(context.Background(), review(req), false)
		wasmtest.WantCallError(t, err, "rego", "validate", wasm.KindTrap)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
	req := namespace(`{}`)
	req.Name = "small"
	if res, err := p.Admit(context.Background(), review(req), false); err != nil || res.Result == nil || res.Result.Message != "256" {
		t.Errorf("a /24 is expanded: %+v %v", res, err)
	}
}
