package kubewarden_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
)

func policy(t *testing.T, bin []byte, name string, settings string, mode kubewarden.ExecutionMode) (*kubewarden.Policy, error) {
	t.Helper()
	return grantedPolicy(t, bin, name, settings, mode, kubewarden.PolicyGrants{})
}

// grantedPolicy loads a policy with grants.
func grantedPolicy(t *testing.T, bin []byte, name string, settings string, mode kubewarden.ExecutionMode, grants kubewarden.PolicyGrants) (*kubewarden.Policy, error) {
	t.Helper()
	rt, err := wasm.NewRuntime(context.Background(), wasm.RuntimeConfig{CacheDir: filepath.Join(os.TempDir(), "wasmkube-test-cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	p, err := kubewarden.Load(context.Background(), rt, bin, kubewarden.PolicyConfig{
		Module: wasm.ModuleConfig{Name: name, PoolSize: 1}, Mode: mode, Settings: json.RawMessage(settings), Grants: grants,
	})
	if err == nil {
		t.Cleanup(func() { p.Close(context.Background()) })
	}
	return p, err
}

func example(t testing.TB, name string) []byte {
	t.Helper()
	bin, ok := examples.Module(name)
	if !ok {
		t.Fatalf("no example %s", name)
	}
	return bin
}

// review is the AdmissionReview of req, as the API server sends it.
func review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionReview {
	return &admissionv1.AdmissionReview{Request: req}
}

func request(op admissionv1.Operation, object string) *admissionv1.AdmissionRequest {
	return &admissionv1.AdmissionRequest{
		UID: "u1", Operation: op, Name: "c", Namespace: "default",
		Object: runtime.RawExtension{Raw: []byte(object)},
	}
}

// TestKubewardenWAPCSettingsAndValidate: safe-annotations through the waPC host.
func TestKubewardenWAPCSettingsAndValidate(t *testing.T) {
	bin := example(t, "safe-annotations")
	md, found, err := kubewarden.ReadMetadata(bin)
	if err != nil || !found || md.ExecutionMode != kubewarden.ModeWAPC || len(md.Rules) != 2 || md.Mutating {
		t.Fatalf("metadata: %+v %v %v", md, found, err)
	}
	_, err = policy(t, bin, "safe-annotations", `{"mandatory_annotations":["a"],"forbidden_annotations":["a"]}`, "")
	if err == nil || !strings.Contains(err.Error(), `policy "safe-annotations": settings are invalid: annotation a is both mandatory and forbidden`) {
		t.Errorf("invalid settings: %v", err)
	}
	p, err := policy(t, bin, "safe-annotations", `{"mandatory_annotations":["owner"],"forbidden_annotations":["x/unsafe"]}`, "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode() != kubewarden.ModeWAPC {
		t.Errorf("mode %s", p.Mode())
	}
	res, err := p.Admit(context.Background(), review(request(admissionv1.Create, `{"kind":"ConfigMap","metadata":{"name":"c","annotations":{"x/unsafe":"1"}}}`)), false)
	if err != nil || res.Allowed || !strings.Contains(res.Result.Message, "missing mandatory annotations: owner; forbidden annotations: x/unsafe") {
		t.Errorf("rejection: %+v %v", res, err)
	}
	res, err = p.Admit(context.Background(), review(request(admissionv1.Create, `{"kind":"ConfigMap","metadata":{"name":"c","annotations":{"owner":"me"}}}`)), false)
	if err != nil || !res.Allowed || res.AuditAnnotations["checked"] != "1" {
		t.Errorf("accepted: %+v %v", res, err)
	}
}

// TestKubewardenMutatedObject: default-labels answers with mutated_object; the host makes a
// JSON patch of it, and refuses it from a non-mutating policy or on DELETE.
func TestKubewardenMutatedObject(t *testing.T) {
	p, err := policy(t, example(t, "default-labels"), "default-labels", `{"labels":{"owner":"platform","team":"a"}}`, "")
	if err != nil {
		t.Fatal(err)
	}
	obj := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","labels":{"team":"mine"}},"data":{"k":"v"}}`
	res, err := p.Admit(context.Background(), review(request(admissionv1.Create, obj)), true)
	if err != nil || !res.Allowed || res.PatchType == nil || *res.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("%+v %v", res, err)
	}
	if string(res.Patch) != `[{"op":"add","path":"/metadata/labels/owner","value":"platform"}]` {
		t.Errorf("patch %s", res.Patch)
	}
	// The API server sends the object decoded (RawExtension.Object), not as bytes.
	decoded := request(admissionv1.Create, "")
	decoded.Object = runtime.RawExtension{Object: &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "c", Labels: map[string]string{"team": "mine"}},
	}}
	res, err = p.Admit(context.Background(), review(decoded), true)
	if err != nil || string(res.Patch) != `[{"op":"add","path":"/metadata/labels/owner","value":"platform"}]` {
		t.Errorf("decoded object: %+v %v", res, err)
	}
	res, err = p.Admit(context.Background(), review(request(admissionv1.Create, obj)), false)
	if err != nil || res.Allowed || !strings.Contains(res.Result.Message, "not allowed to mutate") {
		t.Errorf("non-mutating: %+v %v", res, err)
	}
	res, err = p.Admit(context.Background(), review(request(admissionv1.Delete, obj)), true)
	if err != nil || res.Allowed || !strings.Contains(res.Result.Message, "DELETE") {
		t.Errorf("DELETE: %+v %v", res, err)
	}
	if _, err := policy(t, example(t, "default-labels"), "default-labels", `{}`, ""); err == nil || !strings.Contains(err.Error(), "names no label") {
		t.Errorf("settings without labels: %v", err)
	}
}

// ingresses grants reading Ingresses, what unique-ingress-host asks for.
var ingresses = kubewarden.PolicyGrants{ContextAwareResources: []kubewarden.ContextAwareResource{{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"}}}

// TestKubewardenWASIMode: unique-ingress-host is a WASI command; granted its Ingresses but
// without a cluster, its kubernetes host call fails and the policy says so.
func TestKubewardenWASIMode(t *testing.T) {
	bin := example(t, "unique-ingress-host")
	p, err := grantedPolicy(t, bin, "unique-ingress-host", "", "", ingresses)
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode() != kubewarden.ModeWASI || p.Metadata().ContextAwareResources[0].Kind != "Ingress" {
		t.Fatalf("mode %s metadata %+v", p.Mode(), p.Metadata())
	}
	ingress := `{"kind":"Ingress","metadata":{"name":"i"},"spec":{"rules":[{"host":"a.example.com"}]}}`
	res, err := p.Admit(context.Background(), review(request(admissionv1.Create, ingress)), false)
	if err != nil || res.Allowed || !strings.Contains(res.Result.Message, "cannot list Ingresses: kubernetes host calls are not available here") {
		t.Errorf("no cluster: %+v %v", res, err)
	}
	res, err = p.Admit(context.Background(), review(request(admissionv1.Create, `{"kind":"Ingress","spec":{}}`)), false)
	if err != nil || !res.Allowed {
		t.Errorf("no hosts: %+v %v", res, err)
	}
	// The same binary as waPC does not work: it has no __guest_call.
	if _, err := policy(t, bin, "as-wapc", "", kubewarden.ModeWAPC); err == nil || !strings.Contains(err.Error(), "__guest_call") {
		t.Errorf("WASI policy forced to waPC: %v", err)
	}
}

// TestKubewardenFaults: traps, endless loops, garbage and errors are typed call errors; the
// instances are replaced and the next call works.
func TestKubewardenFaults(t *testing.T) {
	bin := wasmtest.Faults(t)
	if _, err := policy(t, bin, "faults", `{"mode":"invalid-settings"}`, ""); err == nil || !strings.Contains(err.Error(), "mode says the settings are invalid") {
		t.Errorf("invalid settings: %v", err)
	}
	cases := map[string]wasm.ErrorKind{"trap": wasm.KindTrap, "loop": wasm.KindTimeout, "garbage": wasm.KindInvalidResponse, "error": wasm.KindModuleError}
	for mode, kind := range cases {
		p, err := policy(t, bin, "faults-"+mode, `{"mode":"`+mode+`"}`, "")
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Admit(context.Background(), review(request(admissionv1.Create, `{}`)), false)
		if !wasm.IsKind(err, kind) {
			t.Errorf("%s: %v, want %s", mode, err, kind)
		}
	}
	p, err := policy(t, bin, "faults-reject", `{"mode":"reject"}`, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Admit(context.Background(), review(request(admissionv1.Create, `{}`)), false)
	if err != nil || res.Allowed || res.Result.Code != 418 || res.Result.Message != "rejected by faults" || res.Warnings[0] != "careful" || res.AuditAnnotations["seen"] != "yes" {
		t.Errorf("reject: %+v %v", res, err)
	}
}

// TestAnnotate: metadata written by Annotate reads back; annotating twice keeps one section.
func TestAnnotate(t *testing.T) {
	bin := example(t, "magic-validate")
	md, err := kubewarden.ParseMetadata([]byte("executionMode: wasi\nmutating: true\nrules: [{apiGroups: [''], apiVersions: [v1], resources: [pods], operations: [CREATE]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	once, err := kubewarden.Annotate(bin, md)
	if err != nil {
		t.Fatal(err)
	}
	twice, err := kubewarden.Annotate(once, md)
	if err != nil || len(twice) != len(once) {
		t.Fatalf("annotate twice: %d vs %d bytes, %v", len(twice), len(once), err)
	}
	got, found, err := kubewarden.ReadMetadata(twice)
	if err != nil || !found || got.ExecutionMode != kubewarden.ModeWASI || !got.Mutating || got.Rules[0].Resources[0] != "pods" {
		t.Errorf("read back: %+v %v %v", got, found, err)
	}
	if _, err := kubewarden.ParseMetadata([]byte("executionMode: wasm\n")); err == nil {
		t.Error("unknown execution mode accepted")
	}
	if _, err := kubewarden.ParseMetadata([]byte("rulez: []\n")); err == nil {
		t.Error("unknown field accepted")
	}
}

// TestKubewardenContextAwareRefusal: a policy gets what it is granted, not what its metadata
// asks for: kubernetes calls outside its granted contextAwareResources, or without any, are
// refused by the host, whatever the metadata says.
func TestKubewardenContextAwareRefusal(t *testing.T) {
	bin := example(t, "unique-ingress-host") // its metadata asks for Ingresses
	services := kubewarden.PolicyGrants{ContextAwareResources: []kubewarden.ContextAwareResource{{APIVersion: "v1", Kind: "Service"}}}
	ingress := `{"kind":"Ingress","metadata":{"name":"i"},"spec":{"rules":[{"host":"a.example.com"}]}}`
	for _, c := range []struct {
		name   string
		grants kubewarden.PolicyGrants
		want   string
	}{
		{"Services granted", services, "cannot access networking.k8s.io/v1 Ingress: not granted to it"},
		{"nothing granted", kubewarden.PolicyGrants{}, "host capability kubernetes/list_resources_all is not granted"},
		{"everything else granted", kubewarden.PolicyGrants{HostCapabilities: []string{"*"}, ContextAwareResources: services.ContextAwareResources},
			"cannot access networking.k8s.io/v1 Ingress: not granted to it"},
	} {
		p, err := grantedPolicy(t, bin, "refused", "", "", c.grants)
		if err != nil {
			t.Fatal(err)
		}
		if missing := p.Metadata(); len(missing.Ungranted(c.grants).ContextAwareResources) != 1 {
			t.Errorf("%s: the metadata's Ingresses should be reported as not granted", c.name)
		}
		res, err := p.Admit(context.Background(), review(request(admissionv1.Create, ingress)), false)
		if err != nil || res.Allowed || !strings.Contains(res.Result.Message, c.want) {
			t.Errorf("%s: %+v %v, want %q", c.name, res.Result, err, c.want)
		}
	}
}
