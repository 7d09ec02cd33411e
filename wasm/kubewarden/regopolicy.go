package kubewarden

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/wasmkube/wasmkube/wasm"
)

// Rego policies in Kubewarden's two modes. OPA mode: input {"request": AdmissionRequest}, data
// the settings (and data.kubernetes, kube-mgmt's layout, for context-aware policies); the result
// is an AdmissionReview whose response is the answer. Gatekeeper mode: input {"parameters":
// settings, "review": AdmissionRequest}, data.inventory (Gatekeeper's sync layout) for
// context-aware policies; the result is the list of violations, each with a msg.

// isRego says mode runs a Rego policy.
func isRego(mode ExecutionMode) bool { return mode == ModeOPA || mode == ModeGatekeeper }

// regoModuleConfig is mc for a Rego policy: OPA's exports, the wasm start section as its only
// start function, and env.memory defined by each instance.
func regoModuleConfig(mc wasm.ModuleConfig) wasm.ModuleConfig {
	mc.Exports = opaExports
	mc.StartFunctions = []string{}
	mc.DefineMemory = &wasm.ImportName{Module: OPAModule, Name: "memory"}
	return mc
}

// RegoBuiltins lists the builtins a Rego policy calls on the host, OPA's Go implementations
// (sorted; none for other modes).
func (p *Policy) RegoBuiltins() []string {
	var names []string
	if p.rego != nil {
		for _, b := range p.rego.builtins {
			names = append(names, b.name)
		}
	}
	slices.Sort(names)
	return names
}

// RegoEntrypoints lists a Rego policy's entrypoints by id (none for other modes).
func (p *Policy) RegoEntrypoints() []string {
	if p.rego == nil {
		return nil
	}
	names := slices.Collect(maps.Keys(p.rego.entrypoints))
	slices.SortFunc(names, func(a, b string) int { return int(p.rego.entrypoints[a] - p.rego.entrypoints[b]) })
	return names
}

// loadRegoPolicy reads the policy's program (ABI, entrypoints, builtins) and its static data:
// for OPA mode the settings, which must be a JSON object.
func (p *Policy) loadRegoPolicy(ctx context.Context, entrypoint string) error {
	if !isRego(p.mode) {
		return fmt.Errorf("policy %q: entrypoint %q: only Rego policies (executionMode opa or gatekeeper) have entrypoints; this one is %s", p.Name(), entrypoint, p.mode)
	}
	var settings map[string]json.RawMessage
	if err := json.Unmarshal(p.settings, &settings); err != nil || settings == nil {
		return fmt.Errorf("policy %q: settings must be a JSON object (OPA's data document), got %.100q", p.Name(), p.settings)
	}
	prog, err := loadRego(ctx, p.mod, entrypoint, p.grantsBuiltin)
	if err != nil {
		return err
	}
	if entrypoint == "" && p.mode == ModeGatekeeper {
		prog.pickViolation()
	}
	p.rego, p.regoData = prog, []byte("{}")
	if p.mode == ModeOPA {
		p.regoData = p.settings
	}
	return nil
}

// grantsBuiltin says the policy's grants allow one of the builtins refused by default.
func (p *Policy) grantsBuiltin(builtin string) bool {
	capability, ok := grantedBuiltins[builtin]
	return ok && p.allowed(capability)
}

// Entrypoint is the name of the Rego entrypoint the policy evaluates ("" for other modes).
func (p *Policy) Entrypoint() string {
	if p.rego != nil {
		for name, id := range p.rego.entrypoints {
			if id == p.rego.entrypoint {
				return name
			}
		}
	}
	return ""
}

// admitRego evaluates a Rego policy on req (see Admit).
func (p *Policy) admitRego(ctx context.Context, req *admissionv1.AdmissionRequest, mutating bool) (*admissionv1.AdmissionResponse, error) {
	ev, err := p.regoEval(ctx, req)
	if err != nil {
		return nil, err
	}
	out, err := p.evalRego(ctx, ev)
	if err != nil {
		return nil, err
	}
	result, err := p.definedResult(out)
	if err != nil {
		return nil, err
	}
	if p.mode == ModeGatekeeper {
		return p.gatekeeperResponse(req, result)
	}
	return p.opaResponse(req, result, mutating)
}

// The input documents of the two modes.
type (
	opaInput struct {
		Request *admissionv1.AdmissionRequest `json:"request"`
	}
	gatekeeperInput struct {
		Parameters json.RawMessage               `json:"parameters"`
		Review     *admissionv1.AdmissionRequest `json:"review"`
	}
)

// regoEval is the evaluation of req: its input, and the data read from the cluster.
func (p *Policy) regoEval(ctx context.Context, req *admissionv1.AdmissionRequest) (ev regoEval, err error) {
	var input any = opaInput{req}
	if p.mode == ModeGatekeeper {
		input = gatekeeperInput{p.settings, req}
	}
	if ev.input, err = json.Marshal(input); err == nil {
		ev.data, err = p.contextData(ctx)
	}
	return ev, err
}

// definedResult is the value of the result set out, which must be defined.
func (p *Policy) definedResult(out []byte) (json.RawMessage, error) {
	result, defined, err := regoResult(out)
	if err == nil && !defined {
		err = fmt.Errorf("entrypoint %s is undefined for this request: the policy gave no answer", p.Entrypoint())
	}
	if err != nil {
		return nil, p.mod.Fail("validate", wasm.KindInvalidResponse, err)
	}
	return result, nil
}

// opaResponse reads an OPA-mode result, an AdmissionReview, as the answer to req.
func (p *Policy) opaResponse(req *admissionv1.AdmissionRequest, result json.RawMessage, mutating bool) (*admissionv1.AdmissionResponse, error) {
	var review struct {
		Response *admissionv1.AdmissionResponse `json:"response"`
	}
	if err := json.Unmarshal(result, &review); err != nil || review.Response == nil {
		return nil, p.mod.Fail("validate", wasm.KindInvalidResponse, fmt.Errorf("want an AdmissionReview {\"response\": {\"allowed\": bool, …}}, got %.200q", result))
	}
	res := review.Response
	res.UID = req.UID
	if len(res.Patch) == 0 || !res.Allowed {
		res.Patch, res.PatchType = nil, nil
		return res, nil
	}
	if refused := p.mutationRefused(res, req, mutating); refused != nil {
		return refused, nil
	}
	jsonPatch := admissionv1.PatchTypeJSONPatch
	res.PatchType = &jsonPatch
	return res, nil
}

// gatekeeperResponse reads a Gatekeeper-mode result, the list of violations: none allows, any
// denies with their messages joined by ", ".
func (p *Policy) gatekeeperResponse(req *admissionv1.AdmissionRequest, result json.RawMessage) (*admissionv1.AdmissionResponse, error) {
	var violations []struct {
		Msg string `json:"msg"`
	}
	if err := json.Unmarshal(result, &violations); err != nil || result[0] != '[' {
		return nil, p.mod.Fail("validate", wasm.KindInvalidResponse, fmt.Errorf("want the list of violations [{\"msg\": string}], got %.200q", result))
	}
	if len(violations) == 0 {
		return &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}, nil
	}
	msgs := make([]string, len(violations))
	for i, v := range violations {
		msgs[i] = v.Msg
	}
	return denied(&admissionv1.AdmissionResponse{UID: req.UID}, strings.Join(msgs, ", ")), nil
}

// contextData is the data document of a context-aware policy, read from the cluster for every
// resource it was granted; nil when it was granted none (the static data serves).
func (p *Policy) contextData(ctx context.Context) ([]byte, error) {
	if len(p.grants.ContextAwareResources) == 0 {
		return nil, nil
	}
	if p.kube == nil {
		return nil, fmt.Errorf("policy %q: context-aware data: kubernetes host calls are not available here (no cluster)", p.Name())
	}
	data := map[string]json.RawMessage{} // the static data's top level, its values left encoded
	if err := json.Unmarshal(p.regoData, &data); err != nil {
		return nil, err
	}
	key, tree, placer := "kubernetes", map[string]any{}, kubeMgmtPlacer
	if p.mode == ModeGatekeeper {
		key, tree, placer = "inventory", map[string]any{"cluster": map[string]any{}, "namespace": map[string]any{}}, inventoryPlacer
	}
	if err := p.fillTree(ctx, tree, placer); err != nil {
		return nil, fmt.Errorf("policy %q: context-aware data: %w", p.Name(), err)
	}
	var err error
	if data[key], err = json.Marshal(tree); err != nil {
		return nil, err
	}
	return json.Marshal(data)
}

// fillTree places every object of every granted kind in tree, where placer's layout puts it.
func (p *Policy) fillTree(ctx context.Context, tree map[string]any, placer func(ContextAwareResource) func(listedObject) []string) error {
	for _, r := range p.grants.ContextAwareResources {
		items, err := p.listAll(ctx, r)
		if err != nil {
			return err
		}
		pathOf := placer(r)
		for _, item := range items {
			place(tree, pathOf(item), item.raw)
		}
	}
	return nil
}

// listedObject is what the layouts need of an object.
type listedObject struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	raw json.RawMessage
}

// listAll lists every object of r in the cluster.
func (p *Policy) listAll(ctx context.Context, r ContextAwareResource) ([]listedObject, error) {
	payload, err := json.Marshal(map[string]string{"api_version": r.APIVersion, "kind": r.Kind})
	if err != nil {
		return nil, err
	}
	out, err := p.kube.Kubernetes(ctx, "list_resources_all", payload)
	if err == nil {
		var objs []listedObject
		if objs, err = decodeList(out); err == nil {
			return objs, nil
		}
	}
	return nil, fmt.Errorf("list %s %s: %w", r.APIVersion, r.Kind, err)
}

// decodeList reads a List's items.
func decodeList(out []byte) ([]listedObject, error) {
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, err
	}
	objs := make([]listedObject, len(list.Items))
	for i, raw := range list.Items {
		if err := json.Unmarshal(raw, &objs[i]); err != nil {
			return nil, err
		}
		objs[i].raw = raw
	}
	return objs, nil
}

// kubeMgmtPlacer is where kube-mgmt puts r's objects: kubernetes.<plural>.<namespace>.<name>,
// or kubernetes.<plural>.<name> for a cluster-scoped kind (the plural found once per kind).
func kubeMgmtPlacer(r ContextAwareResource) func(listedObject) []string {
	gv, _ := schema.ParseGroupVersion(r.APIVersion)
	plural, _ := meta.UnsafeGuessKindToResource(gv.WithKind(r.Kind))
	return func(obj listedObject) []string {
		if obj.Metadata.Namespace == "" {
			return []string{plural.Resource, obj.Metadata.Name}
		}
		return []string{plural.Resource, obj.Metadata.Namespace, obj.Metadata.Name}
	}
}

// inventoryPlacer is where Gatekeeper's sync puts r's objects: inventory.namespace.<ns>.
// <apiVersion>.<kind>.<name>, or inventory.cluster.<apiVersion>.<kind>.<name>.
func inventoryPlacer(r ContextAwareResource) func(listedObject) []string {
	return func(obj listedObject) []string {
		if obj.Metadata.Namespace == "" {
			return []string{"cluster", r.APIVersion, r.Kind, obj.Metadata.Name}
		}
		return []string{"namespace", obj.Metadata.Namespace, r.APIVersion, r.Kind, obj.Metadata.Name}
	}
}

// place sets path in the tree m to v, making the objects on the way.
func place(m map[string]any, path []string, v json.RawMessage) {
	for _, key := range path[:len(path)-1] {
		if _, ok := m[key].(map[string]any); !ok {
			m[key] = map[string]any{}
		}
		m = m[key].(map[string]any)
	}
	m[path[len(path)-1]] = v
}
