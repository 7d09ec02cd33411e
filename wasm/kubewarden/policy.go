// Package kubewarden runs Kubewarden policies (https://kubewarden.io) on the wasm runtime, as
// Kubewarden's policy-server does: their metadata (rules, mutating, execution mode, what they
// may read), the waPC protocol and the WASI execution mode, settings validation, and the host
// capabilities of the "kubewarden" binding (tracing, Kubernetes reads, can_i, DNS, certificate
// checks), each granted explicitly, and Rego policies compiled to WebAssembly (OPA and
// Gatekeeper modes) on OPA's wasm ABI.
package kubewarden

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/internal/wasmbin"
)

// ExecutionMode is how a Kubewarden policy is run.
type ExecutionMode string

// Kubewarden execution modes.
const (
	// ModeWAPC is a waPC guest (the default).
	ModeWAPC ExecutionMode = "kubewarden-wapc"
	// ModeWASI is a WASI command run once per call with argv validate or validate-settings.
	ModeWASI ExecutionMode = "wasi"
	// ModeOPA and ModeGatekeeper are Rego policies compiled to WebAssembly (OPA's wasm ABI).
	ModeOPA        ExecutionMode = "opa"
	ModeGatekeeper ExecutionMode = "gatekeeper"
)

// MetadataSection is the custom section that holds a Kubewarden policy's metadata (JSON).
const MetadataSection = "io.kubewarden.metadata"

// Metadata is a Kubewarden policy's metadata, as `kwctl annotate` (and `wasmkube module
// annotate`) write it into the MetadataSection.
type Metadata struct {
	ProtocolVersion          string                                       `json:"protocolVersion,omitempty"`
	Rules                    []admissionregistrationv1.RuleWithOperations `json:"rules,omitempty"`
	Mutating                 bool                                         `json:"mutating"`
	BackgroundAudit          *bool                                        `json:"backgroundAudit,omitempty"`
	ContextAwareResources    []ContextAwareResource                       `json:"contextAwareResources,omitempty"`
	HostCapabilities         []string                                     `json:"hostCapabilities,omitempty"`
	ExecutionMode            ExecutionMode                                `json:"executionMode,omitempty"`
	PolicyType               string                                       `json:"policyType,omitempty"`
	MinimumKubewardenVersion string                                       `json:"minimumKubewardenVersion,omitempty"`
	Annotations              map[string]string                            `json:"annotations,omitempty"`
}

// ContextAwareResource is a kind a context-aware policy may read.
type ContextAwareResource struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// ReadMetadata returns a module's Kubewarden metadata; found is false when it has none.
func ReadMetadata(bin []byte) (_ *Metadata, found bool, err error) {
	raw, found, err := wasmbin.CustomSection(bin, MetadataSection)
	if err != nil || !found {
		return nil, false, err
	}
	var md Metadata
	if err := json.Unmarshal(raw, &md); err != nil {
		return nil, true, fmt.Errorf("custom section %s: %w", MetadataSection, err)
	}
	return &md, true, nil
}

// ParseMetadata reads a Kubewarden metadata document (metadata.yml, YAML or JSON) strictly:
// unknown fields are errors.
func ParseMetadata(doc []byte) (*Metadata, error) {
	var md Metadata
	if err := yaml.UnmarshalStrict(doc, &md); err != nil {
		return nil, err
	}
	switch md.ExecutionMode {
	case "", ModeWAPC, ModeWASI, ModeOPA, ModeGatekeeper:
	default:
		return nil, fmt.Errorf("executionMode %q: want kubewarden-wapc, wasi, opa or gatekeeper", md.ExecutionMode)
	}
	return &md, nil
}

// Annotate returns bin with md as its Kubewarden metadata (replacing any it had).
func Annotate(bin []byte, md *Metadata) ([]byte, error) {
	raw, err := json.Marshal(md)
	if err != nil {
		return nil, err
	}
	return wasmbin.SetCustomSection(bin, MetadataSection, raw)
}

// KubernetesHost answers a policy's kubernetes host calls (get_resource,
// list_resources_by_namespace, list_resources_all, can_i) with Kubewarden's payloads; the
// Policy has already checked that its grants allow the call. A host should be limited to the
// same grants (hook.KubernetesHost.ForPolicy is), so that a read is refused even if that check
// were bypassed.
type KubernetesHost interface {
	Kubernetes(ctx context.Context, operation string, payload []byte) ([]byte, error)
}

// PolicyConfig configures a Kubewarden policy.
type PolicyConfig struct {
	// Module configures the module; its exports, start functions and isolation are set from
	// the execution mode.
	Module wasm.ModuleConfig
	// Mode overrides the execution mode of the metadata (default: metadata, else waPC).
	Mode ExecutionMode
	// Settings are the policy's settings (JSON object); {} when empty.
	Settings json.RawMessage
	// Kubernetes answers kubernetes host calls; nil: they fail as not available (offline).
	Kubernetes KubernetesHost
	// Grants are what the policy may reach: the kinds it may read and the host capabilities
	// it may use. Nothing by default, whatever its metadata asks for (Metadata.Ungranted tells
	// what it asks for beyond them).
	Grants PolicyGrants
	// Logger receives tracing/log and __console_log lines, stderr of WASI-mode calls and Rego's
	// print() output.
	Logger *slog.Logger
	// Entrypoint names the entrypoint a Rego policy evaluates (OPA and Gatekeeper modes), as
	// entrypoints() lists it ("policy/violation"); default: for Gatekeeper the one named
	// violation, else the first.
	Entrypoint string
}

// Policy is a loaded Kubewarden policy whose settings were validated.
type Policy struct {
	mod      *wasm.Module
	meta     Metadata
	mode     ExecutionMode
	settings json.RawMessage
	kube     KubernetesHost
	grants   PolicyGrants
	logger   *slog.Logger
	// host and console serve the policy's host calls and console lines (made once, not per call).
	host    HostCallFunc
	console func(string)
	// rego is a Rego policy's program and regoData its static data document (regopolicy.go).
	rego     *regoProgram
	regoData []byte
}

// Load loads a Kubewarden policy into r: reads its metadata, picks the execution mode, compiles
// (and for waPC pre-warms) it and runs validate_settings once.
//
// # Notes
//
//   - waPC instances run _start, _initialize and wapc_init once each, those exported; the
//     policy must answer protocol_version with "v1".
//   - WASI-mode policies start every validate call as a fresh instance would: from a snapshot
//     of a resident instance taken where the command first reads stdin (wasm.ModuleConfig's
//     Snapshot), or, when the module does not allow that, in a fresh instance (the next one is
//     made in the background while the policy waits for its next request).
//   - Invalid settings are an error carrying the policy's own message.
func Load(ctx context.Context, r *wasm.Runtime, bin []byte, cfg PolicyConfig) (_ *Policy, err error) {
	md, mode, err := readMode(bin, cfg)
	if err != nil {
		return nil, err
	}
	mc, err := moduleConfig(cfg.Module, mode)
	if err != nil {
		return nil, err
	}
	if err := defineModeHosts(ctx, r, mode); err != nil {
		return nil, err
	}
	mod, err := r.Load(ctx, bin, mc)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = mod.Close(context.Background())
		}
	}()
	p := newPolicy(mod, md, mode, cfg)
	if err := p.prepare(ctx, cfg.Entrypoint); err != nil {
		return nil, err
	}
	return p, nil
}

// readMode reads bin's metadata (empty when it has none) and the mode it runs in: cfg's, else
// the metadata's, else waPC.
func readMode(bin []byte, cfg PolicyConfig) (*Metadata, ExecutionMode, error) {
	md, _, err := ReadMetadata(bin)
	if md == nil {
		md = &Metadata{}
	}
	return md, cmp.Or(cfg.Mode, md.ExecutionMode, ModeWAPC), err
}

// defineModeHosts adds the host modules mode's policies import to r.
func defineModeHosts(ctx context.Context, r *wasm.Runtime, mode ExecutionMode) error {
	if err := DefineHosts(ctx, r); err != nil || !isRego(mode) {
		return err
	}
	return DefineOPAHost(ctx, r)
}

// newPolicy is the policy of mod, its settings {} when cfg has none.
func newPolicy(mod *wasm.Module, md *Metadata, mode ExecutionMode, cfg PolicyConfig) *Policy {
	settings := cfg.Settings
	if len(settings) == 0 || string(settings) == "null" {
		settings = json.RawMessage("{}")
	}
	p := &Policy{mod: mod, meta: *md, mode: mode, settings: settings, kube: cfg.Kubernetes, logger: mod.Logger(), grants: cfg.Grants}
	if cfg.Logger != nil {
		p.logger = cfg.Logger.With("policy", mod.Name())
	}
	p.host = p.hostCall
	p.console = func(line string) { p.logger.Info(line, "source", "console") }
	return p
}

// prepare readies a loaded policy as its mode needs: a Rego program read, a waPC protocol
// version checked; settings validated.
func (p *Policy) prepare(ctx context.Context, entrypoint string) error {
	if isRego(p.mode) || entrypoint != "" {
		return p.loadRegoPolicy(ctx, entrypoint)
	}
	if p.mode == ModeWAPC {
		if err := p.checkProtocolVersion(ctx); err != nil {
			return err
		}
	}
	return p.ValidateSettings(ctx)
}

// moduleConfig is mc with the exports, start functions and isolation of mode.
func moduleConfig(mc wasm.ModuleConfig, mode ExecutionMode) (wasm.ModuleConfig, error) {
	switch mode {
	case ModeWAPC:
		mc.Exports = []string{"__guest_call"}
		mc.StartFunctions = []string{"_start", "_initialize", "wapc_init"}
	case ModeWASI:
		mc.Exports = []string{"_start"}
		mc.StartFunctions = []string{}
		mc.Isolation = wasm.Fresh
		mc.SpareArgs = []string{"policy.wasm", "validate"}
		mc.Snapshot = true
	case ModeOPA, ModeGatekeeper:
		return regoModuleConfig(mc), nil
	default:
		return mc, fmt.Errorf("policy %q: unknown execution mode %q (kubewarden-wapc, wasi, opa, gatekeeper)", mc.Name, mode)
	}
	return mc, nil
}

// checkProtocolVersion asks a waPC policy for its protocol version, as policy-server does: only
// v1 exists.
func (p *Policy) checkProtocolVersion(ctx context.Context) error {
	out, err := CallWAPC(ctx, p.mod, "protocol_version", nil, nil, nil)
	if err != nil {
		return fmt.Errorf("policy %q: protocol_version: %w", p.Name(), err)
	}
	var v string
	if err := json.Unmarshal(out, &v); err != nil || v != "v1" {
		return fmt.Errorf("policy %q: protocol version %.40q is not supported: Kubewarden's waPC protocol is v1", p.Name(), out)
	}
	return nil
}

// Name is the policy's name.
func (p *Policy) Name() string { return p.mod.Name() }

// Mode is the execution mode the policy runs in.
func (p *Policy) Mode() ExecutionMode { return p.mode }

// Metadata is the policy's metadata (empty when it has none).
func (p *Policy) Metadata() Metadata { return p.meta }

// Module is the policy's module.
func (p *Policy) Module() *wasm.Module { return p.mod }

// Close releases the policy's module.
func (p *Policy) Close(ctx context.Context) error { return p.mod.Close(ctx) }

// ValidateSettings asks the policy whether its settings are valid.
//
// # Notes
//
//   - Rego policies (OPA and Gatekeeper modes) cannot validate settings, as in Kubewarden: any
//     JSON object is valid.
func (p *Policy) ValidateSettings(ctx context.Context) error {
	if p.rego != nil {
		return nil
	}
	out, err := p.call(ctx, "validate_settings", "validate-settings", p.settings)
	if err != nil {
		return fmt.Errorf("policy %q: validate settings: %w", p.Name(), err)
	}
	var v struct {
		Valid   *bool  `json:"valid"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(out, &v); err != nil || v.Valid == nil {
		return p.mod.Fail("validate_settings", wasm.KindInvalidResponse, fmt.Errorf("want {\"valid\": bool, \"message\": string}, got %.200q", out))
	}
	if !*v.Valid {
		msg := v.Message
		if msg == "" {
			msg = "no reason given"
		}
		return fmt.Errorf("policy %q: settings are invalid: %s", p.Name(), msg)
	}
	return nil
}

// validationResponse is Kubewarden's answer to validate.
type validationResponse struct {
	Accepted         *bool             `json:"accepted"`
	Message          string            `json:"message"`
	Code             int32             `json:"code"`
	MutatedObject    json.RawMessage   `json:"mutated_object"`
	AuditAnnotations map[string]string `json:"audit_annotations"`
	Warnings         []string          `json:"warnings"`
}

// Admit asks the policy about review's request and converts its answer, a ValidationResponse, to
// the AdmissionResponse a webhook would send: a mutated_object becomes an RFC 6902 JSONPatch
// against the request's object.
//
// # Notes
//
//   - mutating says the profile lets the policy mutate; a mutation otherwise, or on DELETE, is
//     rejected as Kubewarden does.
func (p *Policy) Admit(ctx context.Context, review *admissionv1.AdmissionReview, mutating bool) (*admissionv1.AdmissionResponse, error) {
	req := review.Request
	if p.rego != nil {
		return p.admitRego(ctx, req, mutating)
	}
	payload, err := json.Marshal(struct {
		Request  *admissionv1.AdmissionRequest `json:"request"`
		Settings json.RawMessage               `json:"settings"`
	}{req, p.settings})
	if err != nil {
		return nil, err
	}
	out, err := p.call(ctx, "validate", "validate", payload)
	if err != nil {
		return nil, err
	}
	return p.admissionResult(req, out, mutating)
}

// admissionResult converts the policy's answer out, a ValidationResponse, to req (see Admit).
func (p *Policy) admissionResult(req *admissionv1.AdmissionRequest, out []byte, mutating bool) (*admissionv1.AdmissionResponse, error) {
	var vr validationResponse
	if err := json.Unmarshal(out, &vr); err != nil || vr.Accepted == nil {
		return nil, p.mod.Fail("validate", wasm.KindInvalidResponse, fmt.Errorf("want a ValidationResponse {\"accepted\": bool, …}, got %.200q", out))
	}
	res := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: *vr.Accepted, Warnings: vr.Warnings, AuditAnnotations: vr.AuditAnnotations}
	if vr.Message != "" || vr.Code != 0 {
		res.Result = &metav1.Status{Message: vr.Message, Code: vr.Code}
	}
	if len(vr.MutatedObject) == 0 || string(vr.MutatedObject) == "null" || !res.Allowed {
		return res, nil
	}
	if refused := p.mutationRefused(res, req, mutating); refused != nil {
		return refused, nil
	}
	if vr.MutatedObject[0] != '{' {
		return nil, p.mod.Fail("validate", wasm.KindInvalidResponse, fmt.Errorf("mutated_object must be the whole mutated object, a JSON object; got %.200q", vr.MutatedObject))
	}
	// The object as the policy saw it (the API server sends it decoded, not as Raw).
	original, err := json.Marshal(&req.Object)
	if err != nil {
		return nil, err
	}
	if original[0] != '{' {
		return nil, p.mod.Fail("validate", wasm.KindInvalidResponse, fmt.Errorf("mutated_object for a %s request that has no object to mutate", req.Operation))
	}
	ops, err := jsonpatch.CreatePatch(original, vr.MutatedObject)
	if err != nil {
		return nil, p.mod.Fail("validate", wasm.KindInvalidResponse, fmt.Errorf("mutated_object: %w", err))
	}
	if len(ops) == 0 {
		return res, nil
	}
	if res.Patch, err = json.Marshal(ops); err != nil {
		return nil, err
	}
	jsonPatch := admissionv1.PatchTypeJSONPatch
	res.PatchType = &jsonPatch
	return res, nil
}

// mutationRefused is res turned into a rejection when the policy may not mutate req (it is not a
// mutating policy, or req is a DELETE), as Kubewarden does; nil when it may.
func (p *Policy) mutationRefused(res *admissionv1.AdmissionResponse, req *admissionv1.AdmissionRequest, mutating bool) *admissionv1.AdmissionResponse {
	switch {
	case !mutating:
		return denied(res, fmt.Sprintf("the policy is not allowed to mutate the request (%s is not a mutating policy)", p.Name()))
	case req.Operation == admissionv1.Delete:
		return denied(res, "mutating the object of a DELETE request is not allowed")
	}
	return nil
}

func denied(res *admissionv1.AdmissionResponse, msg string) *admissionv1.AdmissionResponse {
	res.Allowed, res.Result = false, &metav1.Status{Message: msg, Code: 400}
	return res
}

// call runs one operation in the policy's mode: a waPC operation, or the command with argv.
func (p *Policy) call(ctx context.Context, op, argv string, payload []byte) ([]byte, error) {
	if p.mode == ModeWASI {
		out, err := CallCommand(ctx, p.mod, []string{"policy.wasm", argv}, payload, p.host)
		var ce *wasm.CallError
		if errors.As(err, &ce) && ce.Stderr != "" {
			p.mod.LogLine(p.logger, "policy stderr", "stderr", ce.Stderr)
		}
		return out, err
	}
	return CallWAPC(ctx, p.mod, op, payload, p.host, p.console)
}

// Kubewarden's error texts for calls a policy may not make.
var errUnknownBinding = errors.New("unknown binding")

// hostCall serves the kubewarden binding: tracing always; kubernetes reads of the granted
// contextAwareResources; can_i, net and crypto only when granted hostCapabilities match them;
// oci never (offline).
func (p *Policy) hostCall(ctx context.Context, binding, namespace, operation string, payload []byte) ([]byte, error) {
	if binding != "kubewarden" {
		return nil, fmt.Errorf("%w %q", errUnknownBinding, binding)
	}
	capability := namespace + "/" + operation
	if namespace != "tracing" && !p.allowed(capability) {
		return nil, fmt.Errorf("host capability %s is not granted to policy %s (%s of its profile entry)", capability, p.Name(), grantField(capability))
	}
	switch namespace {
	case "tracing":
		if operation != "log" {
			break
		}
		var l struct {
			Level   string `json:"level"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(payload, &l)
		p.mod.LogLine(p.logger, l.Message, "level", l.Level, "source", "tracing")
		return nil, nil
	case "kubernetes":
		return p.kubernetes(ctx, operation, payload)
	case "net":
		if operation == "v1/dns_lookup_host" {
			return dnsLookup(ctx, payload)
		}
	case "crypto":
		if operation == "v1/is_certificate_trusted" {
			return certificateTrusted(payload)
		}
	case "oci":
		return nil, fmt.Errorf("%s is not available: wasmkube runs offline and cannot reach OCI registries", capability)
	}
	return nil, fmt.Errorf("unknown operation %s in namespace %s", operation, namespace)
}

// grantField names the profile field that grants capability.
func grantField(capability string) string {
	if slices.Contains(kubernetesReads, capability) {
		return "grants.contextAwareResources"
	}
	return "grants.hostCapabilities"
}

// allowed reports whether the policy's grants allow capability.
func (p *Policy) allowed(capability string) bool { return p.grants.grantsCapability(capability) }

// Grants are what the policy was granted.
func (p *Policy) Grants() PolicyGrants { return p.grants }

func (p *Policy) kubernetes(ctx context.Context, operation string, payload []byte) ([]byte, error) {
	if operation != "can_i" {
		var r struct {
			APIVersion string `json:"api_version"`
			Kind       string `json:"kind"`
		}
		if err := json.Unmarshal(payload, &r); err != nil {
			return nil, fmt.Errorf("kubernetes/%s: %w", operation, err)
		}
		if !p.grants.grantsResource(r.APIVersion, r.Kind) {
			return nil, fmt.Errorf("policy %s cannot access %s %s: not granted to it (grants.contextAwareResources of its profile entry)", p.Name(), r.APIVersion, r.Kind)
		}
	}
	if p.kube == nil {
		return nil, errors.New("kubernetes host calls are not available here (no cluster)")
	}
	return p.kube.Kubernetes(ctx, operation, payload)
}

func dnsLookup(ctx context.Context, payload []byte) ([]byte, error) {
	var host string
	if err := json.Unmarshal(payload, &host); err != nil {
		return nil, fmt.Errorf("net/v1/dns_lookup_host: payload must be a JSON string: %w", err)
	}
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string][]string{"ips": ips})
}

// certificateTrusted verifies a PEM certificate against the system roots plus the given chain.
func certificateTrusted(payload []byte) ([]byte, error) {
	type cert struct {
		Encoding string    `json:"encoding"`
		Data     byteArray `json:"data"`
	}
	var req struct {
		Cert      cert   `json:"cert"`
		CertChain []cert `json:"cert_chain"`
		NotAfter  string `json:"not_after"`
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, fmt.Errorf("crypto/v1/is_certificate_trusted: %w", err)
	}
	parse := func(c cert) (*x509.Certificate, error) {
		data := c.Data
		if block, _ := pem.Decode(data); block != nil {
			data = block.Bytes
		}
		return x509.ParseCertificate(data)
	}
	leaf, err := parse(req.Cert)
	if err != nil {
		return nil, fmt.Errorf("crypto/v1/is_certificate_trusted: cert: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	for _, c := range req.CertChain {
		ca, err := parse(c)
		if err != nil {
			return nil, fmt.Errorf("crypto/v1/is_certificate_trusted: cert_chain: %w", err)
		}
		roots.AddCert(ca)
	}
	opts := x509.VerifyOptions{Roots: roots}
	if req.NotAfter != "" {
		t, err := time.Parse(time.RFC3339, req.NotAfter)
		if err != nil {
			return nil, fmt.Errorf("crypto/v1/is_certificate_trusted: not_after: %w", err)
		}
		opts.CurrentTime = t
	}
	answer := map[string]any{"trusted": true}
	if _, err := leaf.Verify(opts); err != nil {
		answer = map[string]any{"trusted": false, "reason": err.Error()}
	}
	return json.Marshal(answer)
}

// byteArray decodes bytes sent as Kubewarden's SDKs send them, a JSON array of numbers (Rust's
// Vec<u8>), or as a base64 string (Go's []byte).
type byteArray []byte

func (b *byteArray) UnmarshalJSON(data []byte) error {
	var ints []int
	if err := json.Unmarshal(data, &ints); err == nil {
		out := make([]byte, len(ints))
		for i, v := range ints {
			if v < 0 || v > 255 {
				return fmt.Errorf("byte %d out of range: %d", i, v)
			}
			out[i] = byte(v)
		}
		*b = out
		return nil
	}
	var raw []byte
	if err := json.Unmarshal(data, &raw); err != nil {
		return errors.New("want an array of bytes or a base64 string")
	}
	*b = raw
	return nil
}
