package wasmkube_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wasmkube/wasmkube/profiles"
	kwpolicy "github.com/wasmkube/wasmkube/wasm/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/kubewarden/regobuild"
)

// Context-aware Rego policies of both Kubewarden modes, compiled here with OPA's compiler
// (wasmkube module build-rego), each reading what its grant lets it read from this API server.
const (
	// Gatekeeper mode: a ConfigMap's team label must name a Namespace (data.inventory, granted
	// Namespaces).
	regoTeamNamespace = `package teams

# METADATA
# entrypoint: true
violation contains {"msg": sprintf("ConfigMap %s: team %s has no Namespace", [input.review.object.metadata.name, team])} if {
	team := input.review.object.metadata.labels.team
	not data.inventory.cluster.v1.Namespace[team]
}
`
	// OPA mode: a ConfigMap is refused while a ConfigMap NAME-blocker exists in its namespace
	// (data.kubernetes, granted ConfigMaps); the prefix of its message comes from its settings
	// (data.prefix).
	regoBlocker = `package blocker

# METADATA
# entrypoint: true
main := {"response": response}

default response := {"allowed": true}

response := {"allowed": false, "status": {"message": sprintf("%s: %s is blocked by %s", [data.prefix, input.request.name, blocker])}} if {
	blocker := sprintf("%s-blocker", [input.request.name])
	data.kubernetes.configmaps[input.request.namespace][blocker]
}
`
)

// regoModules compiles the two policies into dir and returns their profile entries, plus the
// required-labels example (Gatekeeper mode, with parameters).
func regoModules(dir string) ([]profiles.AdmissionModule, error) {
	configMaps := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
	}}
	entry := func(name, module, settings, test string, grant profiles.ContextAwareResource) profiles.AdmissionModule {
		m := profiles.AdmissionModule{
			Module: profiles.Module{Name: name, Module: module, Settings: json.RawMessage(settings)},
			Type:   profiles.TypeKubewarden, Rules: configMaps,
			ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"test": test}},
		}
		if grant.Kind != "" {
			m.Grants = &profiles.Grants{ContextAwareResources: []profiles.ContextAwareResource{grant}}
		}
		return m
	}
	var out []profiles.AdmissionModule
	for _, p := range []struct {
		name, src string
		mode      kwpolicy.ExecutionMode
		settings  string
		grant     profiles.ContextAwareResource
	}{
		{"rego-teams", regoTeamNamespace, kwpolicy.ModeGatekeeper, "", profiles.ContextAwareResource{APIVersion: "v1", Kind: "Namespace"}},
		{"rego-blocker", regoBlocker, kwpolicy.ModeOPA, `{"prefix":"blocker says"}`, profiles.ContextAwareResource{APIVersion: "v1", Kind: "ConfigMap"}},
	} {
		src := filepath.Join(dir, p.name+".rego")
		if err := os.WriteFile(src, []byte(p.src), 0o600); err != nil {
			return nil, err
		}
		bin, err := regobuild.Build(context.Background(), regobuild.Options{Paths: []string{src}, Metadata: &kwpolicy.Metadata{ExecutionMode: p.mode}})
		if err != nil {
			return nil, err
		}
		module := filepath.Join(dir, p.name+".wasm")
		if err := os.WriteFile(module, bin, 0o600); err != nil {
			return nil, err
		}
		out = append(out, entry(p.name, module, p.settings, p.name, p.grant))
	}
	return append(out, entry("rego-labels", "builtin:required-labels", `{"labels":["owner"]}`, "rego-labels", profiles.ContextAwareResource{})), nil
}

// testRego: Rego policies of both modes decide client-go's requests through the real server,
// with what they read from it.
func testRego(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	cms := c.CoreV1().ConfigMaps("default")
	labeled := func(name string, labels map[string]string) *corev1.ConfigMap { return configMap(name, labels, nil) }

	// Gatekeeper mode, parameters from the settings, sprintf on the host.
	_, err := cms.Create(ctx, labeled("rl", map[string]string{"test": "rego-labels"}), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `admission WASM module "rego-labels" denied the request: ConfigMap rl has no label "owner"`) {
		t.Errorf("required-labels: %v", err)
	}
	if _, err := cms.Create(ctx, labeled("rl", map[string]string{"test": "rego-labels", "owner": "me"}), metav1.CreateOptions{}); err != nil {
		t.Errorf("required-labels with the label: %v", err)
	}

	// Gatekeeper mode, data.inventory: the team's Namespace must exist.
	team := map[string]string{"test": "rego-teams", "team": "rego-team"}
	_, err = cms.Create(ctx, labeled("teams", team), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `admission WASM module "rego-teams" denied the request: ConfigMap teams: team rego-team has no Namespace`) {
		t.Errorf("no team Namespace: %v", err)
	}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rego-team"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the team's ConfigMap to be admitted once its Namespace exists", func(ctx context.Context) (bool, error) {
		_, err := cms.Create(ctx, labeled("teams", team), metav1.CreateOptions{})
		return err == nil, nil
	})

	// OPA mode, data.kubernetes and the settings as data.
	blocked := map[string]string{"test": "rego-blocker"}
	if _, err := cms.Create(ctx, labeled("free", blocked), metav1.CreateOptions{}); err != nil {
		t.Errorf("nothing blocks free: %v", err)
	}
	if _, err := cms.Create(ctx, labeled("held-blocker", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "held to be blocked by held-blocker", func(ctx context.Context) (bool, error) {
		_, err := cms.Create(ctx, labeled("held", blocked), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), `admission WASM module "rego-blocker" denied the request: blocker says: held is blocked by held-blocker`), nil
	})
	body, err := c.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`wasmkube_module_calls_total{hook="admission",module="rego-teams"}`, `wasmkube_module_calls_total{hook="admission",module="rego-blocker"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
