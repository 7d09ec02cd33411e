// Package examples_test runs every example module through the wasmkube host and checks that each
// committed .wasm is what `make examples` builds from its source.
package examples_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/hook"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/kubewarden/regobuild"
)

func exampleDirs(t *testing.T) []string {
	t.Helper()
	mains, err := filepath.Glob("*/main.go")
	if err != nil || len(mains) < 9 {
		t.Fatalf("examples: %v %v", mains, err)
	}
	var names []string
	for _, m := range mains {
		names = append(names, filepath.Dir(m))
	}
	return names
}

// allExampleDirs lists every example, Go (main.go), Rust (lib.rs) and Rego (policy.rego), sorted.
func allExampleDirs(t *testing.T) []string {
	t.Helper()
	dirs := exampleDirs(t)
	for _, pattern := range []string{"*/lib.rs", "*/policy.rego"} {
		sources, _ := filepath.Glob(pattern)
		for _, src := range sources {
			dirs = append(dirs, filepath.Dir(src))
		}
	}
	slices.Sort(dirs)
	return dirs
}

// TestRegoExamplesAreCurrent compiles every Rego example (examples/NAME/policy.rego) as `make
// examples-rego` does (wasmkube module build-rego) and compares.
func TestRegoExamplesAreCurrent(t *testing.T) {
	sources, _ := filepath.Glob("*/policy.rego")
	if len(sources) < 2 {
		t.Fatalf("Rego examples: %v", sources)
	}
	for _, src := range sources {
		name := filepath.Dir(src)
		t.Run(name, func(t *testing.T) {
			doc, err := os.ReadFile(filepath.Join(name, "metadata.yml"))
			if err != nil {
				t.Fatal(err)
			}
			md, err := kubewarden.ParseMetadata(doc)
			if err != nil {
				t.Fatalf("metadata.yml: %v", err)
			}
			want, err := regobuild.Build(context.Background(), regobuild.Options{Paths: []string{src}, Metadata: md})
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(name, name+".wasm"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("examples/%s/%s.wasm is not what wasmkube module build-rego makes of policy.rego: run `make examples-rego` and commit", name, name)
			}
		})
	}
}

// TestCommittedWasmIsCurrent rebuilds every example with the Makefile's flags and compares.
func TestCommittedWasmIsCurrent(t *testing.T) {
	out := t.TempDir()
	for _, name := range exampleDirs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fresh := filepath.Join(out, name+".wasm")
			metadata, err := os.ReadFile(filepath.Join(name, "metadata.yml"))
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			args := []string{"build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false", `-ldflags=-s -w -buildid=`, "-o", fresh, "./" + name}
			if bytes.Contains(metadata, []byte("\nexecutionMode: wasi\n")) {
				args = slices.Delete(args, 1, 2) // a WASI command
			}
			cmd := exec.Command("go", args...)
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build: %v\n%s", err, b)
			}
			want, err := os.ReadFile(fresh)
			if err != nil {
				t.Fatal(err)
			}
			if metadata != nil { // as `wasmkube module annotate` writes it
				md, err := kubewarden.ParseMetadata(metadata)
				if err != nil {
					t.Fatalf("metadata.yml: %v", err)
				}
				if want, err = kubewarden.Annotate(want, md); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(filepath.Join(name, name+".wasm"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("examples/%s/%s.wasm is not what its source builds with %s: run `make examples` and commit", name, name, runtime.Version())
			}
			if len(got) > 3_000_000 {
				t.Errorf("%s.wasm is %d bytes; examples stay at most 3 MB", name, len(got))
			}
		})
	}
}

var rt *wasm.Runtime

func TestMain(m *testing.M) {
	var err error
	rt, err = wasm.NewRuntime(context.Background(), wasm.RuntimeConfig{})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	rt.Close(context.Background())
	os.Exit(code)
}

func load(t *testing.T, name string, exports ...string) *wasm.Module {
	t.Helper()
	bin, err := os.ReadFile(filepath.Join(name, name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := rt.Load(context.Background(), bin, wasm.ModuleConfig{Name: name, Exports: exports, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func admissionRequest(kind, resource string, op admissionv1.Operation, object string) *admissionv1.AdmissionRequest {
	return &admissionv1.AdmissionRequest{
		UID:       "b7a7c2a0-1111-4b5e-9e0c-000000000001",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: kind},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: resource},
		Name:      "demo",
		Namespace: "default",
		Operation: op,
		UserInfo:  authenticationv1.UserInfo{Username: "alice"},
		Object:    k8sruntime.RawExtension{Raw: []byte(object)},
	}
}

func TestMagicAuthn(t *testing.T) {
	m := load(t, "magic-authn", envelope.ExportAuthn)
	resp, ok, err := authenticate(m, nil, "magic-token", []string{"https://kubernetes.default.svc"})
	if err != nil || !ok {
		t.Fatalf("magic-token: %v %v", ok, err)
	}
	u := resp.User
	if u.GetName() != "magic-user" || u.GetUID() != "0" || !slices.Equal(u.GetGroups(), []string{"magic-group", "system:authenticated"}) {
		t.Errorf("user %+v", u)
	}
	if !slices.Equal(resp.Audiences, []string{"https://kubernetes.default.svc"}) {
		t.Errorf("audiences %v: a module that names none grants the API audiences", resp.Audiences)
	}
	if _, ok, err := authenticate(m, nil, "other-token", nil); ok || err != nil {
		t.Errorf("other token: %v %v, want not authenticated", ok, err)
	}
}

func TestMagicAuthz(t *testing.T) {
	m := load(t, "magic-authz", envelope.ExportAuthz)
	attrs := func(groups []string, resource string) authorizer.Attributes {
		return authorizer.AttributesRecord{User: &user.DefaultInfo{Name: "magic-user", Groups: groups}, Verb: "list",
			Resource: resource, APIVersion: "v1", ResourceRequest: true}
	}
	d, reason, err := authorize(m, nil, attrs([]string{"magic-group"}, "configmaps"))
	if err != nil || d != authorizer.DecisionAllow || reason == "" {
		t.Errorf("configmaps: %v %q %v", d, reason, err)
	}
	for _, a := range []authorizer.Attributes{attrs([]string{"magic-group"}, "pods"), attrs([]string{"other"}, "configmaps")} {
		if d, _, err := authorize(m, nil, a); err != nil || d != authorizer.DecisionNoOpinion {
			t.Errorf("%v: %v %v, want no opinion", a, d, err)
		}
	}
}

// TestMagicValidate runs the rule in Go (the SDK) and in crate-free Rust: same decisions, same
// message.
func TestMagicValidate(t *testing.T) {
	for _, name := range []string{"magic-validate", "magic-validate-rust"} {
		t.Run(name, func(t *testing.T) {
			m := load(t, name, envelope.ExportValidate)
			res, err := admit(m, nil, admissionRequest("ConfigMap", "configmaps", admissionv1.Create,
				`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t"},"data":{"not-allowed-value":"abc"}}`), false)
			if err != nil || res.Allowed || res.Result == nil || res.Result.Code != 400 {
				t.Fatalf("not-allowed-value: %+v %v", res, err)
			}
			want := `admission WASM module "` + name + `" denied the request: value 'not-allowed-value' not allowed in configmap`
			if got := hook.DenialMessage(name, res.Result); got != want {
				t.Errorf("message %q, want %q", got, want)
			}
			for _, admitted := range []struct{ kind, object string }{
				{"ConfigMap", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t"},"data":{"ok":"1"}}`},
				{"ConfigMap", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t"}}`},
				{"ConfigMap", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t"},"binaryData":{"not-allowed-value":"YQ=="}}`},
				{"ConfigMap", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t","labels":{"not-allowed-value":"x"}},"data":{"k":"not-allowed-value"}}`},
				{"Secret", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"t"},"data":{"not-allowed-value":"YQ=="}}`},
			} {
				res, err = admit(m, nil, admissionRequest(admitted.kind, "configmaps", admissionv1.Create, admitted.object), false)
				if err != nil || !res.Allowed || res.Patch != nil {
					t.Errorf("%s: %+v %v, want allowed", admitted.object, res, err)
				}
			}
			// A key written with JSON escapes is the same key.
			res, err = admit(m, nil, admissionRequest("ConfigMap", "configmaps", admissionv1.Create,
				`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t"},"data":{"not\u002dallowed-value":"abc"}}`), false)
			if err != nil || res.Allowed {
				t.Errorf("escaped key: %+v %v, want denied", res, err)
			}
			// A DELETE has no object.
			del := admissionRequest("ConfigMap", "configmaps", admissionv1.Delete, "{}")
			del.Object, del.OldObject = k8sruntime.RawExtension{}, k8sruntime.RawExtension{Raw: []byte(`{"kind":"ConfigMap","data":{"not-allowed-value":"x"}}`)}
			res, err = admit(m, nil, del, false)
			if err != nil || !res.Allowed {
				t.Errorf("delete: %+v %v, want allowed", res, err)
			}
		})
	}
}

// TestMagicValidateRustBadInput: the Rust module's hand-written parser answers an error for what
// is not an envelope (the host then applies the failure policy), and never traps.
func TestMagicValidateRustBadInput(t *testing.T) {
	m := load(t, "magic-validate-rust", envelope.ExportValidate)
	deep := `{"request":{"request":{"uid":"u","object":{"a":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}}}}`
	for in, want := range map[string]string{
		``:                                "the request is not valid JSON",
		`[]`:                              "the request is not valid JSON",
		`{"settings":{}}`:                 "the envelope has no request",
		`{"request":{"kind":"x"}}`:        "the AdmissionReview has no request",
		`{"request":{"request":{"uid"`:    "the request is not valid JSON",
		`{"request":{"request":{"uid":"\`: "the request is not valid JSON",
		`{"request":{"request":{"object":{"data":{"a":tru`: "the request is not valid JSON",
		deep: "the request nests too deeply",
	} {
		err := m.Call(context.Background(), envelope.ExportValidate, []byte(in), func(stdout []byte) error {
			var out struct{ Error string }
			if err := json.Unmarshal(stdout, &out); err != nil {
				return err
			}
			if out.Error != want {
				t.Errorf("%.60q: error %q, want %q", in, out.Error, want)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%.60q: %v", in, err)
		}
	}
}

// TestRustExamplesAreCurrent rebuilds every crate-free Rust example (examples/NAME/lib.rs) as
// `make examples-rust` does, with Debian's rustc 1.63 (RUSTC, default /usr/bin/rustc), and
// compares. rustc's output depends on its version: another version skips.
func TestRustExamplesAreCurrent(t *testing.T) {
	rustc := os.Getenv("RUSTC")
	if rustc == "" {
		rustc = "/usr/bin/rustc"
	}
	version, err := exec.Command(rustc, "--version").Output()
	if err != nil || !strings.HasPrefix(string(version), "rustc 1.63.0") {
		t.Skipf("%s is not rustc 1.63.0 (apt-get install rustc libstd-rust-dev-wasm32 on Debian 12): %q %v", rustc, version, err)
	}
	sources, _ := filepath.Glob("*/lib.rs")
	if len(sources) == 0 {
		t.Fatal("no examples/*/lib.rs")
	}
	for _, src := range sources {
		name := filepath.Dir(src)
		dir, err := filepath.Abs(name)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), name+".wasm")
		cmd := exec.Command(rustc, "--edition", "2021", "--crate-type", "cdylib", "--target", "wasm32-wasi", "-C", "opt-level=3",
			"-C", "strip=symbols", "--remap-path-prefix="+dir+"=.", "-o", out, "lib.rs")
		cmd.Dir = dir
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, b)
		}
		want, _ := os.ReadFile(out)
		have, _ := os.ReadFile(filepath.Join(name, name+".wasm"))
		if !bytes.Equal(want, have) {
			t.Errorf("examples/%s/%s.wasm is not what rustc makes of lib.rs: run make examples-rust and commit", name, name)
		}
	}
}

func TestMagicMutate(t *testing.T) {
	m := load(t, "magic-mutate", envelope.ExportValidate)
	for _, obj := range []string{
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t"}}`,
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t"},"data":{"a":"1"}}`,
	} {
		res, err := admit(m, nil, admissionRequest("ConfigMap", "configmaps", admissionv1.Create, obj), true)
		if err != nil || !res.Allowed || res.PatchType == nil || *res.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("mutate %s: %+v %v", obj, res, err)
		}
		patch, _ := jsonpatch.DecodePatch(res.Patch)
		out, err := patch.Apply([]byte(obj))
		if err != nil {
			t.Fatal(err)
		}
		var cm struct{ Data map[string]string }
		_ = json.Unmarshal(out, &cm)
		if cm.Data["magic-value"] != "foobar" {
			t.Errorf("after patch: %s", out)
		}
	}
	// As a validating module, a patch is refused.
	_, err := admit(m, nil, admissionRequest("ConfigMap", "configmaps", admissionv1.Create, `{"kind":"ConfigMap"}`), false)
	if !wasm.IsKind(err, wasm.KindInvalidResponse) || !strings.Contains(err.Error(), "may not patch") {
		t.Errorf("validating module patching: %v", err)
	}
}

func TestWorkloadPolicy(t *testing.T) {
	m := load(t, "workload-policy", envelope.ExportValidate)
	settings := json.RawMessage(`{"requiredLabels":["team"],"allowedRegistries":["registry.k8s.io/","ghcr.io/acme/"]}`)
	deploy := func(labels, image string) string {
		return `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":` + labels + `},` +
			`"spec":{"template":{"spec":{"containers":[{"name":"c","image":"` + image + `"}]}}}}`
	}
	cases := []struct {
		name, object string
		allowed      bool
		message      string
		warnings     int
	}{
		{"missing label", deploy(`{"app":"web"}`, "registry.k8s.io/pause:3.10"), false, "lacks required labels: team", 0},
		{"foreign registry", deploy(`{"team":"a"}`, "docker.io/library/nginx:1.27"), false, "not from an allowed registry", 0},
		{"pinned", deploy(`{"team":"a"}`, "ghcr.io/acme/web@sha256:abc"), true, "", 0},
		{"latest", deploy(`{"team":"a"}`, "ghcr.io/acme/web:latest"), true, "", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := admissionRequest("Deployment", "deployments", admissionv1.Create, c.object)
			req.Kind.Group = "apps"
			res, err := admit(m, settings, req, false)
			if err != nil {
				t.Fatal(err)
			}
			if res.Allowed != c.allowed || (c.message != "" && !strings.Contains(res.Result.Message, c.message)) || len(res.Warnings) != c.warnings {
				t.Errorf("got %+v (result %+v)", res, res.Result)
			}
			if c.allowed && res.AuditAnnotations["images-checked"] != "1" {
				t.Errorf("audit annotations %v", res.AuditAnnotations)
			}
		})
	}
	// Other kinds pass untouched.
	res, err := admit(m, settings, admissionRequest("ConfigMap", "configmaps", admissionv1.Create, `{"kind":"ConfigMap"}`), false)
	if err != nil || !res.Allowed {
		t.Errorf("configmap: %+v %v", res, err)
	}
}

// mint makes an hmac-authn token.
func mint(secret, payload string) string {
	signed := base64.RawURLEncoding.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v1." + signed))
	return "v1." + signed + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// tamper flips one bit of a token's signature: always a different signature (replacing its
// last characters with fixed ones was not, for one signature in 1024).
func tamper(t *testing.T, token string) string {
	t.Helper()
	i := strings.LastIndex(token, ".")
	sig, err := base64.RawURLEncoding.DecodeString(token[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	sig[0] ^= 1
	return token[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

func TestHMACAuthn(t *testing.T) {
	m := load(t, "hmac-authn", envelope.ExportAuthn)
	settings := json.RawMessage(`{"secret":"s3cret","issuer":"platform"}`)
	future := time.Now().Add(time.Hour).Unix()
	good := mint("s3cret", `{"sub":"alice","uid":"1001","groups":["dev"],"iss":"platform","exp":`+itoa(future)+`}`)
	resp, ok, err := authenticate(m, settings, good, nil)
	if err != nil || !ok || resp.User.GetName() != "alice" || !slices.Equal(resp.User.GetGroups(), []string{"dev", "system:authenticated"}) || resp.User.GetExtra()["hmac-authn/expires"] == nil {
		t.Fatalf("good token: %+v %v %v", resp, ok, err)
	}
	bad := map[string]string{
		"wrong secret":   mint("other", `{"sub":"alice","iss":"platform","exp":`+itoa(future)+`}`),
		"expired":        mint("s3cret", `{"sub":"alice","iss":"platform","exp":1000}`),
		"wrong issuer":   mint("s3cret", `{"sub":"alice","iss":"elsewhere","exp":`+itoa(future)+`}`),
		"not v1":         "magic-token",
		"tampered":       tamper(t, good),
		"no subject":     mint("s3cret", `{"iss":"platform","exp":`+itoa(future)+`}`),
		"garbage inside": mint("s3cret", `{"sub":`),
	}
	for name, tok := range bad {
		if _, ok, err := authenticate(m, settings, tok, nil); ok || err != nil {
			t.Errorf("%s: authenticated=%v err=%v, want plainly not authenticated", name, ok, err)
		}
	}
	// Without a secret the module reports an error: it never authenticates.
	if _, ok, err := authenticate(m, nil, good, nil); ok || !wasm.IsKind(err, wasm.KindModuleError) {
		t.Errorf("no secret: %v %v", ok, err)
	}
}

// TestSuites runs every example's suite.yaml (every example has one): what
// `wasmkube module test examples/*/suite.yaml` runs.
func TestSuites(t *testing.T) {
	if raceEnabled {
		// The suites compile every example again (each suite its own runtime): five minutes
		// under the race detector for code that calls modules one at a time. make test runs
		// them without it.
		t.Skip("slow under the race detector; make test runs the suites without it")
	}
	for _, dir := range allExampleDirs(t) {
		t.Run(dir, func(t *testing.T) {
			s, err := profiles.LoadTestSuite(filepath.Join(dir, "suite.yaml"))
			if err != nil {
				t.Fatalf("every example has a suite.yaml: %v", err)
			}
			res, err := wasmkube.RunTestSuite(context.Background(), s, wasmkube.TestSuiteOptions{BuiltinModules: examples.FS(), ModuleCacheDir: "-"})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range res.Cases {
				if !c.Passed() {
					t.Errorf("%s: %s\ndecision: %s", c.Name, strings.Join(c.Mismatches, "\n"), c.Decision)
				}
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestEmbeddedModules(t *testing.T) {
	want := allExampleDirs(t)
	if got := examples.Names(); !slices.Equal(got, want) {
		t.Fatalf("embedded %v, want every example %v", got, want)
	}
	bin, ok := examples.Module("magic-authn")
	disk, _ := os.ReadFile("magic-authn/magic-authn.wasm")
	if !ok || !bytes.Equal(bin, disk) {
		t.Fatal("embedded magic-authn differs from the file")
	}
}

// authenticate, authorize and admit ask a module as the API server does (package hook).
func authenticate(m *wasm.Module, settings json.RawMessage, token string, audiences []string) (*authenticator.Response, bool, error) {
	return hook.Authenticate(context.Background(), hook.Module{Module: m, Settings: settings}, token, audiences)
}

func authorize(m *wasm.Module, settings json.RawMessage, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	out, err := envelope.ReviewAccess(context.Background(), m, settings, hook.SubjectAccessReview(attrs))
	return hook.DecideAuthz(hook.AuthzModule{Module: hook.Module{Module: m, Settings: settings}}, out, err)
}

func admit(m *wasm.Module, settings json.RawMessage, req *admissionv1.AdmissionRequest, mutating bool) (*admissionv1.AdmissionResponse, error) {
	return envelope.Admit(context.Background(), m, settings, &admissionv1.AdmissionReview{Request: req}, mutating)
}
