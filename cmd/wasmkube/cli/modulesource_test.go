package cli

import (
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/wasmkube/wasmkube/wasm/source"
)

// TestRemoteModules: `module push` to an in-process registry (HTTPS on loopback), then `up` with
// the registry:// module and an https:// module (sha256-pinned, from a loopback HTTPS server)
// pulls, verifies and serves them; a second `up` works with both servers gone (the cache). A
// wrong pin and an unreachable, uncached registry stop `up` with an error naming the entry.
func TestRemoteModules(t *testing.T) {
	e := newEnv(t)
	reg := httptest.NewTLSServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	mutate, err := os.ReadFile("../../../examples/magic-mutate/magic-mutate.wasm")
	if err != nil {
		t.Fatal(err)
	}
	files := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(mutate) }))
	defer files.Close()
	caFile := filepath.Join(e.root, "test-ca.pem")
	var pems []byte
	for _, srv := range []*httptest.Server{reg, files} {
		pems = append(pems, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})...)
	}
	if err := os.WriteFile(caFile, pems, 0o600); err != nil {
		t.Fatal(err)
	}
	e.vars = append(e.vars, "SSL_CERT_FILE="+caFile)

	host := strings.TrimPrefix(reg.URL, "https://")
	ref := "registry://" + host + "/policies/magic-validate:v1"
	code, out, stderr := e.run("module", "push", "../../../examples/magic-validate/magic-validate.wasm", ref)
	if code != 0 || !strings.Contains(out, "by digest: "+host+"/policies/magic-validate@sha256:") {
		t.Fatalf("module push: %d %s %s", code, out, stderr)
	}
	// The module commands take the reference too, as kwctl run does.
	code, out, stderr = e.run("module", "run", ref, "--hook", "validate", "--request", "../../../examples/magic-validate/request.yaml")
	if code != 0 || !strings.Contains(out, "denied") {
		t.Errorf("module run %s: %d %s %s", ref, code, out, stderr)
	}
	profile := func(name, validate, mutatePin string) string {
		doc := fmt.Sprintf(`apiVersion: wasmkube.dev/v1alpha1
kind: Profile
name: %s
port: 0
controllers: {enabled: false}
admission:
  modules:
  - module: %s
    mutating: true
    sha256: %s
    rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}]
  - module: %s
    rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}]
`, name, files.URL+"/magic-mutate.wasm", mutatePin, validate)
		path := filepath.Join(e.root, name+".yaml")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	remote := profile("remote", ref, source.Digest(mutate))
	served := func(which string) {
		t.Helper()
		up := e.startUp("--profile", remote)
		up.waitReady(t)
		kubectl := func(args ...string) (int, string, string) {
			return e.run(append([]string{"kubectl", "--profile", remote}, args...)...)
		}
		if code, _, stderr := kubectl("create", "configmap", "bad-"+which, "--from-literal=not-allowed-value=1"); code == 0 ||
			!strings.Contains(stderr, `admission WASM module "magic-validate" denied the request`) {
			t.Errorf("%s: the registry's magic-validate did not deny: %d %s", which, code, stderr)
		}
		if code, _, stderr := kubectl("create", "configmap", "good-"+which); code != 0 {
			t.Errorf("%s: create: %d %s", which, code, stderr)
		}
		if code, out, _ := kubectl("get", "configmap", "good-"+which, "-o", "jsonpath={.data.magic-value}"); code != 0 || out != "foobar" {
			t.Errorf("%s: the https magic-mutate did not mutate: %d %q", which, code, out)
		}
		if code := up.interrupt(t); code != 0 {
			t.Errorf("%s: up exited %d:\n%s", which, code, up.text())
		}
	}
	served("online")
	wrongPin := profile("wrong-pin", ref, source.Digest([]byte("another module")))
	code, _, stderr = e.run("up", "--profile", wrongPin)
	if code == 0 || !strings.Contains(stderr, "admission.modules[0] (magic-mutate)") || !strings.Contains(stderr, "it was not run") {
		t.Errorf("a wrong pin: %d %s", code, stderr)
	}
	reg.Close()
	files.Close()
	served("offline")
	uncached := profile("uncached", "registry://"+host+"/policies/other:v1", source.Digest(mutate))
	code, _, stderr = e.run("up", "--profile", uncached)
	if code == 0 || !strings.Contains(stderr, "admission.modules[1] (other)") || !strings.Contains(stderr, "not cached") {
		t.Errorf("an unreachable registry: %d %s", code, stderr)
	}
}
