package wasmkube_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
	kwpolicy "github.com/wasmkube/wasmkube/wasm/kubewarden"
)

const hmacSecret = "a-test-secret-that-is-long-enough"

// testFiles are the files testProfile writes.
type testFiles struct {
	dir      string
	auditLog string
}

var files testFiles

// testProfile is the demo profile plus admission modules that misbehave on purpose (the faults
// test module of wasm/testdata, built here) and the kube-apiserver flags of the original proof of
// concept: module config files for authentication, authorization (placed by --authorization-mode)
// and admission (an AdmissionConfiguration with an inline WASM entry), and an audit policy.
func testProfile(dir string) (*profiles.Loaded, []string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	faults := filepath.Join(dir, "faults.wasm")
	build := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", faults, "./wasm/testdata/faults")
	build.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("build the faults module: %v\n%s", err, out)
	}
	hmacModule, err := filepath.Abs("examples/hmac-authn/hmac-authn.wasm")
	if err != nil {
		return nil, nil, err
	}
	files = testFiles{dir: dir, auditLog: filepath.Join(dir, "audit.log")}
	write := map[string]string{
		"authn.yaml": fmt.Sprintf(`modules:
- name: original-hmac
  module: %s
  settings: {secret: %s, issuer: test}
`, hmacModule, hmacSecret),
		// Relative to this file.
		"authz.yaml": `modules:
- name: original-deny-all
  module: faults.wasm
  settings: {mode: deny}
`,
		"admission.yaml": `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: WASM
  configuration:
    modules:
    - name: original-admission
      module: faults.wasm
      settings: {mode: error}
      rules:
      - operations: ["CREATE"]
        apiGroups: [""]
        apiVersions: ["v1"]
        resources: ["secrets"]
`,
		"audit-policy.yaml": `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  resources: [{group: "", resources: [configmaps, pods]}]
- level: None
`,
	}
	for name, content := range write {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, nil, err
		}
	}

	p, err := profiles.NewFinder("").Resolve("demo")
	if err != nil {
		return nil, nil, err
	}
	fault := func(name, mode string, policy admissionregistrationv1.FailurePolicyType) profiles.AdmissionModule {
		return profiles.AdmissionModule{
			Module:        profiles.Module{Name: name, Module: faults, Settings: json.RawMessage(`{"mode":"` + mode + `"}`)},
			FailurePolicy: string(policy),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
			}},
		}
	}
	selectTest := func(m profiles.AdmissionModule, value string) profiles.AdmissionModule {
		m.ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"test": value}}
		return m
	}
	closed := selectTest(fault("fail-closed", "error", admissionregistrationv1.Fail), "fail-closed")
	stderr := selectTest(fault("fail-stderr", "exit3", admissionregistrationv1.Fail), "fail-stderr")
	open := selectTest(fault("fail-open", "trap", admissionregistrationv1.Ignore), "fail-open")
	slow := selectTest(fault("too-slow", "loop", admissionregistrationv1.Fail), "timeout")
	slow.Timeout = &metav1.Duration{Duration: 300 * time.Millisecond}
	strict := fault("strict-namespace", "error", admissionregistrationv1.Fail)
	strict.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"policy": "strict"}}
	// Two mutating modules in order, each seeing the other's change, then a validating one that
	// sees both.
	var order []profiles.AdmissionModule
	for _, name := range []string{"count-1", "count-2"} {
		m := selectTest(fault(name, "increment", admissionregistrationv1.Fail), "order")
		m.Mutating = ptr.To(true)
		order = append(order, m)
	}
	check := selectTest(fault("count-check", "expect", admissionregistrationv1.Fail), "order")
	check.Settings = json.RawMessage(`{"mode":"expect","count":"2"}`)
	p.Admission.Modules = append(p.Admission.Modules, closed, stderr, open, slow, strict, check, order[0], order[1])
	// An authorization module that answers allowed and denied both true for the user
	// "conflicted", before magic-authz, which would allow magic-group's ConfigMap reads.
	conflicted := profiles.AuthorizationModule{Module: profiles.Module{Name: "conflicted", Module: faults,
		Settings: json.RawMessage(`{"mode":"allow-and-deny","user":"conflicted"}`)}}
	p.Authorization.Modules = append([]profiles.AuthorizationModule{conflicted}, p.Authorization.Modules...)
	// An authentication module that echoes every token it is sent into its stderr and exits.
	p.Authentication.Modules = append(p.Authentication.Modules, profiles.Module{Name: "echo-token", Module: faults,
		Settings: json.RawMessage(`{"mode":"echo-token-exit"}`)})

	// Kubewarden policies, their rules and mutating from their metadata.
	kubewarden := func(name, module, settings, selected string) profiles.AdmissionModule {
		m := profiles.AdmissionModule{Module: profiles.Module{Name: name, Module: "builtin:" + module, Settings: json.RawMessage(settings)}, Type: "kubewarden"}
		if selected != "" {
			m = selectTest(m, selected)
		}
		return m
	}
	annotations := kubewarden("kw-annotations", "safe-annotations", `{"mandatory_annotations":["owner"],"recommended_annotations":["description"]}`, "kubewarden")
	annotations.Message = "every object needs an owner annotation"
	monitor := kubewarden("kw-monitor", "safe-annotations", `{"mandatory_annotations":["owner"]}`, "monitor")
	monitor.Mode = "monitor"
	// unique-ingress-host re-annotated to read Services only: its Ingress lookups are refused.
	md, err := kwpolicy.ParseMetadata([]byte("executionMode: wasi\ncontextAwareResources: [{apiVersion: v1, kind: Service}]\n" +
		"rules: [{apiGroups: [networking.k8s.io], apiVersions: [v1], resources: [ingresses], operations: [CREATE]}]\n"))
	if err != nil {
		return nil, nil, err
	}
	bin, _ := examples.Module("unique-ingress-host")
	if bin, err = kwpolicy.Annotate(bin, md); err != nil {
		return nil, nil, err
	}
	refusedPath := filepath.Join(dir, "services-only.wasm")
	if err := os.WriteFile(refusedPath, bin, 0o600); err != nil {
		return nil, nil, err
	}
	refused := kubewarden("kw-refused", "", "", "refused")
	refused.Module.Module = refusedPath
	refused.Grants = &profiles.Grants{ContextAwareResources: []profiles.ContextAwareResource{{APIVersion: "v1", Kind: "Service"}}}
	ingress := kubewarden("kw-ingress", "unique-ingress-host", "", "")
	ingress.Grants = &profiles.Grants{ContextAwareResources: []profiles.ContextAwareResource{{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"}}}
	p.Admission.Modules = append(p.Admission.Modules,
		kubewarden("kw-labels", "default-labels", `{"labels":{"owner":"platform"}}`, "kubewarden"),
		annotations, monitor, ingress, refused)
	reliability, err := reliabilityModules(faults)
	if err != nil {
		return nil, nil, err
	}
	p.Admission.Modules = append(p.Admission.Modules, reliability...)
	rego, err := regoModules(dir)
	if err != nil {
		return nil, nil, err
	}
	p.Admission.Modules = append(p.Admission.Modules, rego...)

	return p, []string{
		"--authentication-wasm-config-file=" + filepath.Join(dir, "authn.yaml"),
		"--authorization-mode=Node,RBAC,WASM",
		"--authorization-wasm-config-file=" + filepath.Join(dir, "authz.yaml"),
		"--enable-admission-plugins=NodeRestriction,WASM",
		"--admission-control-config-file=" + filepath.Join(dir, "admission.yaml"),
		"--audit-policy-file=" + filepath.Join(dir, "audit-policy.yaml"),
		"--audit-log-path=" + files.auditLog,
	}, nil
}

// warnings collects the warnings the server sends.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.msgs, "\n")
}

func configMap(name string, labels map[string]string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Data: data}
}

// testMagicAdmission is the original walkthrough's admission half, as magic-user.
func testMagicAdmission(t *testing.T) {
	ctx := context.Background()
	cfg := rest.AnonymousClientConfig(cluster.RESTConfig)
	cfg.BearerToken = "magic-token"
	cms := kubernetes.NewForConfigOrDie(cfg).CoreV1().ConfigMaps("default")

	_, err := cms.Create(ctx, configMap("t", nil, map[string]string{"not-allowed-value": "abc"}), metav1.CreateOptions{})
	want := `admission WASM module "magic-validate" denied the request: value 'not-allowed-value' not allowed in configmap`
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("ConfigMap with not-allowed-value: %v, want 400 (the module's code): %s", err, want)
	}
	created, err := cms.Create(ctx, configMap("t", nil, nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("plain ConfigMap: %v", err)
	}
	if created.Data["magic-value"] != "foobar" {
		t.Errorf("magic-mutate did not add magic-value: %v", created.Data)
	}
	// UPDATE is in the rules too; the mutation comes back, and validation sees the mutated object.
	created.Data = map[string]string{"other": "x"}
	updated, err := cms.Update(ctx, created, metav1.UpdateOptions{})
	if err != nil || updated.Data["magic-value"] != "foobar" || updated.Data["other"] != "x" {
		t.Errorf("update: %v %v", updated.Data, err)
	}
	body, err := client(t).CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`wasmkube_module_calls_total{hook="admission",module="magic-mutate"}`,
		`wasmkube_module_calls_total{hook="admission",module="magic-validate"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// testMutationOrder: mutating modules run in order, each seeing the previous one's changes,
// and validating modules see the result (count-check comes before count-1 in the profile).
func testMutationOrder(t *testing.T) {
	ctx := context.Background()
	cm, err := client(t).CoreV1().ConfigMaps("default").Create(ctx, configMap("order", map[string]string{"test": "order"}, nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if got := cm.Annotations["wasmkube.dev/count"]; got != "2" {
		t.Errorf("count = %q, want 2", got)
	}
}

// testKubewarden: Kubewarden policies built for Kubewarden run with the rules of their
// metadata: waPC validation (with a custom message), waPC mutation through mutated_object,
// monitor mode, and a WASI-mode policy that looks up Ingresses in this API server.
func testKubewarden(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	cms := c.CoreV1().ConfigMaps("default")
	_, err := cms.Create(ctx, configMap("kw1", map[string]string{"test": "kubewarden"}, nil), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `admission WASM module "kw-annotations" denied the request: every object needs an owner annotation`) {
		t.Errorf("without owner annotation: %v", err)
	}
	cm := configMap("kw2", map[string]string{"test": "kubewarden"}, nil)
	cm.Annotations = map[string]string{"owner": "me"}
	w := &warnings{}
	cfg := rest.CopyConfig(cluster.RESTConfig)
	cfg.WarningHandler = w
	got, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
	if err != nil || got.Labels["owner"] != "platform" {
		t.Errorf("with owner annotation: %v %v, want the owner label added by kw-labels", got, err)
	}
	if !strings.Contains(w.all(), "ConfigMap kw2 has no description annotation") {
		t.Errorf("the policy's warning did not reach the client: %q", w.all())
	}
	if _, err := cms.Create(ctx, configMap("kw3", map[string]string{"test": "monitor"}, nil), metav1.CreateOptions{}); err != nil {
		t.Errorf("monitor mode rejected: %v", err)
	}
	waitForAudit(t, func(e auditEvent) bool {
		return e.ObjectRef.Name == "kw3" && strings.Contains(e.Annotations["kw-monitor/monitor"], "would deny")
	}, "kw-monitor's monitor annotation")
	waitForAudit(t, func(e auditEvent) bool {
		return e.ObjectRef.Name == "kw2" && e.Annotations["kw-annotations/checked"] == "1"
	}, "kw-annotations' audit annotation")

	ing := func(name, host string) *networkingv1.Ingress {
		return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: host}}}}
	}
	ingresses := c.NetworkingV1().Ingresses("default")
	if _, err := ingresses.Create(ctx, ing("first", "a.example.com"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("first Ingress: %v", err)
	}
	poll(t, "the second Ingress with the same host to be rejected", func(ctx context.Context) (bool, error) {
		_, err := ingresses.Create(ctx, ing("second", "a.example.com"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "host already in use: a.example.com (used by default/first)"), nil
	})
	if _, err := ingresses.Create(ctx, ing("third", "b.example.com"), metav1.CreateOptions{}); err != nil {
		t.Errorf("an Ingress with another host: %v", err)
	}
	// Once first moves to another host, a.example.com is free: the cache follows updates.
	first, err := ingresses.Get(ctx, "first", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first.Spec.Rules[0].Host = "z.example.com"
	if _, err := ingresses.Update(ctx, first, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "a.example.com to be free again", func(ctx context.Context) (bool, error) {
		_, err := ingresses.Create(ctx, ing("second", "a.example.com"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil, nil
	})
	// A policy granted Services only is refused its Ingress lookup by the host.
	outside := ing("outside", "c.example.com")
	outside.Labels = map[string]string{"test": "refused"}
	_, err = ingresses.Create(ctx, outside, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "cannot list Ingresses: policy kw-refused cannot access networking.k8s.io/v1 Ingress: not granted to it") {
		t.Errorf("lookup outside the granted contextAwareResources: %v", err)
	}
}

// testWarningsAndAudit: a module's warnings reach the client, its audit annotations the audit
// log, prefixed with the module name.
func testWarningsAndAudit(t *testing.T) {
	ctx := context.Background()
	w := &warnings{}
	cfg := rest.CopyConfig(cluster.RESTConfig)
	cfg.WarningHandler = w
	c := kubernetes.NewForConfigOrDie(cfg)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "unpinned", Labels: map[string]string{"team": "a"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "ghcr.io/acme/web:latest"}}},
	}
	if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("pod from an allowed registry: %v", err)
	}
	if !strings.Contains(w.all(), "ghcr.io/acme/web:latest has no pinned tag or digest") {
		t.Errorf("warnings: %q", w.all())
	}
	pod.Name, pod.Spec.Containers[0].Image = "elsewhere", "docker.io/library/nginx:1.27"
	_, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `admission WASM module "workload-policy" denied the request`) {
		t.Errorf("pod from another registry: %v", err)
	}
	if _, err := c.CoreV1().ConfigMaps("default").Create(ctx, configMap("open", map[string]string{"test": "fail-open"}, nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("failurePolicy Ignore: %v", err)
	}
	waitForAudit(t, func(e auditEvent) bool {
		return e.ObjectRef.Resource == "pods" && e.ObjectRef.Name == "unpinned" && e.Annotations["workload-policy/images-checked"] == "1"
	}, "the pod's workload-policy/images-checked annotation")
	waitForAudit(t, func(e auditEvent) bool {
		a := e.Annotations["fail-open/failed-open"]
		return e.ObjectRef.Name == "open" && strings.Contains(a, "trap") && !strings.Contains(a, "about to trap") // no stderr
	}, "the ConfigMap's fail-open/failed-open annotation, without the module's stderr")
}

type auditEvent struct {
	ObjectRef struct {
		Resource string `json:"resource"`
		Name     string `json:"name"`
	} `json:"objectRef"`
	Annotations map[string]string `json:"annotations"`
}

func waitForAudit(t *testing.T, match func(auditEvent) bool, what string) {
	t.Helper()
	poll(t, what+" in the audit log", func(context.Context) (bool, error) {
		f, err := os.Open(files.auditLog)
		if err != nil {
			return false, nil
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e auditEvent
			if json.Unmarshal(sc.Bytes(), &e) == nil && match(e) {
				return true, nil
			}
		}
		return false, nil
	})
}

// testFailurePolicy: a failing module rejects under Fail (500, naming it) and is skipped under
// Ignore; a module that loops is stopped at its timeout; the server keeps serving.
func testFailurePolicy(t *testing.T) {
	ctx := context.Background()
	cms := client(t).CoreV1().ConfigMaps("default")
	_, err := cms.Create(ctx, configMap("closed", map[string]string{"test": "fail-closed"}, nil), metav1.CreateOptions{})
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), `admission WASM module "fail-closed" failed`) || !strings.Contains(err.Error(), "the module says no") {
		t.Errorf("failurePolicy Fail: %v", err)
	}
	// The client learns the module and the kind of failure; its stderr stays in the server log.
	_, err = cms.Create(ctx, configMap("stderr", map[string]string{"test": "fail-stderr"}, nil), metav1.CreateOptions{})
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), `admission WASM module "fail-stderr" failed: exit: exited with code 3`) || strings.Contains(err.Error(), "exiting with 3") {
		t.Errorf("a failure with stderr: %v, want the module and the kind, not its stderr", err)
	}
	waitForLog(t, "the module's stderr", func(log string) bool {
		return strings.Contains(log, `"fail-stderr"`) && strings.Contains(log, "exiting with 3")
	})
	began := time.Now()
	_, err = cms.Create(ctx, configMap("slow", map[string]string{"test": "timeout"}, nil), metav1.CreateOptions{})
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), `"too-slow"`) || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("endless loop: %v", err)
	}
	t.Logf("the looping module was stopped after %v (timeout 300ms)", time.Since(began))
	for i := range 3 { // the faulted instances are replaced
		if _, err := cms.Create(ctx, configMap(fmt.Sprintf("after-faults-%d", i), nil, nil), metav1.CreateOptions{}); err != nil {
			t.Errorf("a plain ConfigMap after faults: %v", err)
		}
	}
}

// testSelectors: namespaceSelector, objectSelector and matchConditions decide who is called.
func testSelectors(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "relaxed"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "strict", Labels: map[string]string{"policy": "strict"}}},
	} {
		if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CoreV1().ConfigMaps("relaxed").Create(ctx, configMap("c", nil, nil), metav1.CreateOptions{}); err != nil {
		t.Errorf("namespace without the label: %v", err)
	}
	_, err := c.CoreV1().ConfigMaps("strict").Create(ctx, configMap("c", nil, nil), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `"strict-namespace"`) {
		t.Errorf("namespace with policy=strict: %v, want strict-namespace to reject", err)
	}
	// magic-mutate's matchCondition leaves system components' ConfigMaps alone.
	cfg := rest.CopyConfig(cluster.RESTConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:test-component", Groups: []string{"system:masters"}}
	cm, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().ConfigMaps("relaxed").Create(ctx, configMap("system", nil, nil), metav1.CreateOptions{})
	if err != nil || cm.Data["magic-value"] != "" {
		t.Errorf("a system: user's ConfigMap: %v %v, want no magic-value", cm, err)
	}
	cm, err = c.CoreV1().ConfigMaps("relaxed").Get(ctx, "c", metav1.GetOptions{})
	if err != nil || cm.Data["magic-value"] != "foobar" {
		t.Errorf("the admin's ConfigMap: %v %v, want magic-value", cm, err)
	}
	root, err := c.CoreV1().ConfigMaps("relaxed").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
	if err == nil && root.Data["magic-value"] != "" {
		t.Errorf("the controllers' kube-root-ca.crt was mutated: %v", root.Data)
	}
}

// testDryRun: dry-run requests reach the modules (mutation and rejection) and store nothing.
func testDryRun(t *testing.T) {
	ctx := context.Background()
	cms := client(t).CoreV1().ConfigMaps("default")
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	got, err := cms.Create(ctx, configMap("dry", nil, nil), dry)
	if err != nil || got.Data["magic-value"] != "foobar" {
		t.Fatalf("dry-run create: %v %v", got, err)
	}
	if _, err := cms.Get(ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a dry-run object was stored: %v", err)
	}
	_, err = cms.Create(ctx, configMap("dry", nil, map[string]string{"not-allowed-value": "x"}), dry)
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "magic-validate") {
		t.Errorf("dry-run of a rejected ConfigMap: %v", err)
	}
}

// testOriginalFlags: modules from the original's config files run next to the profile's.
func testOriginalFlags(t *testing.T) {
	ctx := context.Background()
	// --authentication-wasm-config-file: hmac-authn.
	cfg := rest.AnonymousClientConfig(cluster.RESTConfig)
	cfg.BearerToken = hmacToken(t, `{"sub":"alice","uid":"1001","groups":["dev"],"iss":"test","exp":`+fmt.Sprint(time.Now().Add(time.Hour).Unix())+`}`)
	alice := kubernetes.NewForConfigOrDie(cfg)
	review, err := alice.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || review.Status.UserInfo.Username != "alice" {
		t.Fatalf("hmac token: %v %v", review, err)
	}
	// --authorization-wasm-config-file: original-deny-all comes after magic-authz and denies
	// what the others leave; the admin is never asked.
	_, err = alice.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "the faults module denies everything") {
		t.Errorf("alice listing pods: %v", err)
	}
	// --admission-control-config-file with an inline WASM entry.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}}
	_, err = client(t).CoreV1().Secrets("default").Create(ctx, secret, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `admission WASM module "original-admission" failed`) {
		t.Errorf("secret create: %v, want original-admission to fail it", err)
	}
}

// waitForLog waits until the cluster's log (logs/kube.log) satisfies match.
func waitForLog(t *testing.T, what string, match func(log string) bool) {
	t.Helper()
	poll(t, what+" in logs/kube.log", func(context.Context) (bool, error) {
		b, err := os.ReadFile(filepath.Join(cluster.DataDir, "logs", "kube.log"))
		return err == nil && match(string(b)), nil
	})
}

func hmacToken(t *testing.T, payload string) string {
	t.Helper()
	signed := "v1." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, []byte(hmacSecret))
	mac.Write([]byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// testDenyAllFirst restarts the package's cluster with a deny-all module first in the chain and
// failurePolicy Deny: everyone else is locked out, the admin and the API server are not.
func testDenyAllFirst(t *testing.T) {
	ctx := context.Background()
	restartDenyAll(t, "locked", "[WASM, Node, RBAC]", "authentication:\n  modules:\n  - module: builtin:magic-authn\n")
	admin := client(t)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "still-admin"}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("the admin is locked out: %v", err)
	}
	cfg := rest.AnonymousClientConfig(cluster.RESTConfig)
	cfg.BearerToken = "magic-token"
	_, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "the faults module denies everything") {
		t.Errorf("magic-user: %v, want denied by deny-all", err)
	}
}

// testDenyAllBetween restarts the package's cluster with the chain Node,WASM,RBAC and a deny-all
// module with failurePolicy Deny: a node's request that Node allows is allowed (the module,
// which would deny it, is not asked), and a request RBAC would allow is denied by the module,
// asked before RBAC.
func testDenyAllBetween(t *testing.T) {
	ctx := context.Background()
	restartDenyAll(t, "between", "[Node, WASM, RBAC]", "")
	admin := client(t)
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "configmap-reader"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"list"}, APIGroups: []string{""}, Resources: []string{"configmaps"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "bob-reads-configmaps"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "bob"}}}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	as := func(name string, groups ...string) kubernetes.Interface {
		cfg := rest.CopyConfig(cluster.RESTConfig)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: name, Groups: groups}
		return kubernetes.NewForConfigOrDie(cfg)
	}
	if _, err := as("system:node:n1", "system:nodes", "system:authenticated").CoreV1().Services("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("a node listing services (Node allows it before the module is asked): %v", err)
	}
	_, err := as("bob", "system:authenticated").CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "the faults module denies everything") {
		t.Errorf("bob listing configmaps (RBAC would allow it, the module is asked first): %v, want denied by deny-all", err)
	}
}

// restartDenyAll restarts the package's cluster with the profile name: controllers off, the
// authorizer chain chain (YAML) with a deny-all module (faults, failurePolicy Deny) at WASM's
// place, and extra (YAML of other top-level sections).
func restartDenyAll(t *testing.T, name, chain, extra string) {
	t.Helper()
	stopCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cluster.Stop(stopCtx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	p, err := profiles.Parse([]byte(fmt.Sprintf(`apiVersion: wasmkube.dev/v1alpha1
kind: Profile
name: %s
controllers: {enabled: false}
%sauthorization:
  chain: %s
  modules:
  - name: deny-all
    module: %s
    settings: {mode: deny}
    failurePolicy: Deny
`, name, extra, chain, filepath.Join(files.dir, "faults.wasm"))), name+".yaml")
	if err != nil {
		t.Fatal(err)
	}
	cluster, err = wasmkube.Up(context.Background(), p, wasmkube.Options{BuiltinModules: examples.FS(), DataDir: t.TempDir(), Port: ptr.To[int32](0), ModuleCacheDir: t.TempDir()})
	if err != nil {
		t.Fatalf("up with the chain %s and a deny-all module: %v", chain, err)
	}
}
