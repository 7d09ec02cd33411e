package wasmkube

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/wasmkube/wasmkube/apiserver"
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
	"github.com/wasmkube/wasmkube/wasm/hook"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
	"github.com/wasmkube/wasmkube/wasm/source"
)

// TestSuiteOptions configure RunTestSuite.
type TestSuiteOptions struct {
	// BuiltinModules resolves module: builtin:NAME, as Options.BuiltinModules does.
	BuiltinModules fs.FS
	// ModuleFetcher fetches a registry:// or oci:// module (as Options.ModuleFetcher).
	ModuleFetcher *source.Fetcher
	// ModuleCacheDir keeps compiled modules ("": ModuleCacheDir(); "-": no cache).
	ModuleCacheDir string
	// Logger gets the logs of Kubewarden policies (nil: none).
	Logger *slog.Logger
}

// SuiteResult is what came of a suite's cases.
type SuiteResult struct {
	// Source is the suite's file; Module its module as the suite names it.
	Source, Module string
	// Cases are the cases' results, in the suite's order.
	Cases []CaseResult
}

// Failed is how many cases failed.
func (r *SuiteResult) Failed() int {
	n := 0
	for _, c := range r.Cases {
		if !c.Passed() {
			n++
		}
	}
	return n
}

// CaseResult is one case's outcome.
type CaseResult struct {
	Name string
	// Decision is what the API server decides, as `wasmkube module run` says it.
	Decision string
	// Mismatches say where the decision differs from what the case expects; none: it passed.
	Mismatches []string
}

// Passed says the decision was what the case expects.
func (c CaseResult) Passed() bool { return len(c.Mismatches) == 0 }

// RunTestSuite runs every case of suite through its module, offline, and compares what the API
// server would decide with what the case expects. An error means the suite could not run (the
// module does not load); a case that does not hold is a CaseResult with mismatches.
//
// # Notes
//
//   - The decisions are the server's: the same host calls, checks of the answer and decisions
//     (package wasm/hook) as inside kube-apiserver, with failurePolicy Fail, so a module's
//     failure is a denial (HTTP 500) unless a case expects it (expect.error).
//   - Offline there is no cluster: a Kubewarden policy gets no Kubernetes reads (they fail as
//     ungranted), and a patched object is compared as the module left it, not defaulted.
//   - Audit annotation keys are prefixed with the module's name, as in the audit log: the file's
//     base name without .wasm, or NAME of builtin:NAME.
func RunTestSuite(ctx context.Context, suite *profiles.LoadedSuite, opts TestSuiteOptions) (*SuiteResult, error) {
	bin, err := Options{BuiltinModules: opts.BuiltinModules, ModuleFetcher: opts.ModuleFetcher}.moduleReader().
		read(ctx, suite.ResolvePath, profiles.Module{Module: suite.Module})
	if err != nil {
		return nil, fmt.Errorf("test suite %s: module %s: %w", suite.Source, suite.Module, err)
	}
	cacheDir := opts.ModuleCacheDir
	switch cacheDir {
	case "":
		cacheDir = ModuleCacheDir()
	case "-":
		cacheDir = ""
	}
	rt, err := wasm.NewRuntime(ctx, wasm.RuntimeConfig{CacheDir: cacheDir})
	if err != nil {
		return nil, err
	}
	defer rt.Close(context.Background())
	if err := kubewarden.DefineHosts(ctx, rt); err != nil {
		return nil, err
	}
	r := &suiteRunner{suite: suite, rt: rt, bin: bin, name: profiles.DefaultModuleName(suite.Module), logger: opts.Logger, policies: map[string]*kubewarden.Policy{}}
	defer r.close()
	res := &SuiteResult{Source: suite.Source, Module: suite.Module}
	for i, c := range suite.Cases {
		cr, err := r.run(ctx, i, c)
		if err != nil {
			return nil, fmt.Errorf("test suite %s: cases[%d] (%s): %w", suite.Source, i, c.Name, err)
		}
		res.Cases = append(res.Cases, cr)
	}
	return res, nil
}

// suiteRunner holds the module under test: one envelope module, or a Kubewarden policy per
// distinct settings (a policy validates its settings once, at load).
type suiteRunner struct {
	suite    *profiles.LoadedSuite
	rt       *wasm.Runtime
	bin      []byte
	name     string
	logger   *slog.Logger
	module   *wasm.Module
	policies map[string]*kubewarden.Policy
}

func (r *suiteRunner) close() {
	if r.module != nil {
		_ = r.module.Close(context.Background())
	}
	for _, p := range r.policies {
		_ = p.Close(context.Background())
	}
}

func (r *suiteRunner) envelopeModule(ctx context.Context, export string) (*wasm.Module, error) {
	if r.module == nil {
		m, err := r.rt.Load(ctx, r.bin, wasm.ModuleConfig{Name: r.name, Exports: []string{export}, PoolSize: 1})
		if err != nil {
			return nil, err
		}
		r.module = m
	}
	return r.module, nil
}

func (r *suiteRunner) policy(ctx context.Context, settings json.RawMessage) (*kubewarden.Policy, error) {
	if p, ok := r.policies[string(settings)]; ok {
		return p, nil
	}
	logger := r.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p, err := kubewarden.Load(ctx, r.rt, r.bin, kubewarden.PolicyConfig{
		Module: wasm.ModuleConfig{Name: r.name, PoolSize: 1},
		Mode:   kubewarden.ExecutionMode(r.suite.ExecutionMode), Entrypoint: r.suite.Entrypoint,
		Settings: settings, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	r.policies[string(settings)] = p
	return p, nil
}

// run runs case i. An error is one that stops the suite (the module does not load, or a
// Kubewarden policy refuses the case's settings — unless the case expects that).
func (r *suiteRunner) run(ctx context.Context, i int, c profiles.TestCase) (CaseResult, error) {
	settings := c.Settings
	if len(settings) == 0 {
		settings = r.suite.Settings
	}
	switch r.suite.Hook {
	case profiles.SuiteHookAuthn:
		return r.authn(ctx, c, settings)
	case profiles.SuiteHookAuthz:
		return r.authz(ctx, c, settings)
	}
	return r.admission(ctx, i, c, settings)
}

func (r *suiteRunner) admission(ctx context.Context, i int, c profiles.TestCase, settings json.RawMessage) (CaseResult, error) {
	review, err := admissionReview(i, c)
	if err != nil {
		return CaseResult{}, err
	}
	object := slices.Clone(review.Request.Object.Raw)
	admitter, mutating, err := r.admitter(ctx, settings)
	if err != nil {
		if r.suite.Type == profiles.TypeKubewarden && c.Expect.Error != "" { // the case expects the settings to be refused
			return checkFailure(CaseResult{Name: c.Name, Decision: "the policy refused its settings"}, c.Expect.Error, err), nil
		}
		return CaseResult{}, err
	}
	res, callErr := admitter.Admit(ctx, review, mutating)
	d := hook.DecideAdmission(hook.AdmissionModule{Admitter: admitter, Mutating: mutating}, res, callErr)
	out := CaseResult{Name: c.Name, Decision: d.Describe()}
	e := c.Expect
	out = checkFailure(out, e.Error, d.Failure)
	var mis []string
	if e.Allowed != nil && (d.Denied == nil) != *e.Allowed {
		mis = append(mis, fmt.Sprintf("allowed: want %v, got %v", *e.Allowed, d.Denied == nil))
	}
	if e.Message != "" || e.Code != nil {
		switch {
		case d.Denied == nil:
			mis = append(mis, "message and code: want a denial, got allowed")
		default:
			if e.Message != "" && !strings.Contains(d.Denied.ErrStatus.Message, e.Message) {
				mis = append(mis, fmt.Sprintf("message: want it to contain %q, got %q", e.Message, d.Denied.ErrStatus.Message))
			}
			if e.Code != nil && d.Denied.ErrStatus.Code != *e.Code {
				mis = append(mis, fmt.Sprintf("code: want %d, got %d", *e.Code, d.Denied.ErrStatus.Code))
			}
		}
	}
	if e.Warnings != nil && !slices.Equal(d.Warnings, e.Warnings) {
		mis = append(mis, fmt.Sprintf("warnings: want %q, got %q", e.Warnings, d.Warnings))
	}
	if e.AuditAnnotations != nil && !maps.Equal(d.AuditAnnotations, e.AuditAnnotations) {
		mis = append(mis, fmt.Sprintf("auditAnnotations: want %v, got %v", e.AuditAnnotations, d.AuditAnnotations))
	}
	if len(e.Object) > 0 {
		mis = append(mis, compareObject(e.Object, object, d.Patch)...)
	}
	out.Mismatches = append(out.Mismatches, mis...)
	return out, nil
}

// admitter is the module under test as an admission module with settings, and whether it
// mutates (a Kubewarden policy's metadata says so unless the suite does).
func (r *suiteRunner) admitter(ctx context.Context, settings json.RawMessage) (hook.Admitter, bool, error) {
	mutating := r.suite.Mutating != nil && *r.suite.Mutating
	if r.suite.Type != profiles.TypeKubewarden {
		m, err := r.envelopeModule(ctx, envelope.ExportValidate)
		if err != nil {
			return nil, false, err
		}
		return hook.Envelope(hook.Module{Module: m, Settings: settings}), mutating, nil
	}
	p, err := r.policy(ctx, settings)
	if err != nil {
		return nil, false, err
	}
	if r.suite.Mutating == nil {
		mutating = p.Metadata().Mutating
	}
	return p, mutating, nil
}

// checkFailure compares a module's failure with the case's expect.error.
func checkFailure(out CaseResult, want string, failure error) CaseResult {
	switch {
	case want == "" && failure != nil:
		out.Mismatches = append(out.Mismatches, fmt.Sprintf("the module failed: %v", failure))
	case want != "" && failure == nil:
		out.Mismatches = append(out.Mismatches, fmt.Sprintf("error: want the module to fail with %q, it answered", want))
	case want != "" && !strings.Contains(failure.Error(), want):
		out.Mismatches = append(out.Mismatches, fmt.Sprintf("error: want it to contain %q, got %q", want, failure.Error()))
	}
	return out
}

// compareObject compares the object as patch leaves it with want, as JSON values.
func compareObject(want, object []byte, patch *hook.Patch) []string {
	got := object
	if patch != nil {
		var err error
		if got, err = patch.Apply(object); err != nil {
			return []string{fmt.Sprintf("object: the module's patch does not apply: %v", err)}
		}
	}
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		return []string{fmt.Sprintf("expect.object: %v", err)}
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return []string{fmt.Sprintf("object: the patched object is not JSON: %v", err)}
	}
	if diff := cmp.Diff(w, g); diff != "" {
		return []string{"object (-want +got):\n" + diff}
	}
	return nil
}

// admissionReview makes case i's AdmissionReview: its request, or one from the shorthand as
// the API server would send it.
func admissionReview(i int, c profiles.TestCase) (*admissionv1.AdmissionReview, error) {
	if len(c.Request) > 0 {
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(c.Request, &review); err != nil || review.Request == nil {
			return nil, fmt.Errorf("request: not an AdmissionReview with a request: %v", err)
		}
		review.APIVersion, review.Kind = "admission.k8s.io/v1", "AdmissionReview"
		return &review, nil
	}
	op := admissionv1.Operation(c.Operation)
	if op == "" {
		op = admissionv1.Create
	}
	ref := c.Object
	if len(ref) == 0 {
		ref = c.OldObject
	}
	var obj struct {
		metav1.TypeMeta
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(ref, &obj); err != nil {
		return nil, fmt.Errorf("object: %w", err)
	}
	gvk := obj.GroupVersionKind()
	gvr, _ := meta.UnsafeGuessKindToResource(gvk)
	user := authenticationv1.UserInfo{Username: "kubernetes-admin", Groups: []string{"system:masters", "system:authenticated"}}
	if u := c.User; u != nil {
		user = authenticationv1.UserInfo{Username: u.Username, UID: u.UID, Groups: u.Groups}
	}
	req := &admissionv1.AdmissionRequest{
		UID:  types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i)),
		Kind: metav1.GroupVersionKind(gvk), Resource: metav1.GroupVersionResource(gvr),
		RequestKind: ptr.To(metav1.GroupVersionKind(gvk)), RequestResource: ptr.To(metav1.GroupVersionResource(gvr)),
		Name: obj.Metadata.Name, Namespace: obj.Metadata.Namespace, Operation: op, UserInfo: user,
		Object: runtime.RawExtension{Raw: c.Object}, OldObject: runtime.RawExtension{Raw: c.OldObject},
		DryRun: ptr.To(false), Options: operationOptions(op),
	}
	return &admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req}, nil
}

// operationOptions are the options the API server sends with an operation.
func operationOptions(op admissionv1.Operation) runtime.RawExtension {
	kind := map[admissionv1.Operation]string{admissionv1.Create: "CreateOptions", admissionv1.Update: "UpdateOptions", admissionv1.Delete: "DeleteOptions"}[op]
	if kind == "" {
		return runtime.RawExtension{}
	}
	return runtime.RawExtension{Raw: []byte(`{"kind":"` + kind + `","apiVersion":"meta.k8s.io/v1"}`)}
}

func (r *suiteRunner) authn(ctx context.Context, c profiles.TestCase, settings json.RawMessage) (CaseResult, error) {
	review := authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: c.Token, Audiences: []string{apiserver.ServiceAccountIssuer}}}
	if len(c.Request) > 0 {
		if err := json.Unmarshal(c.Request, &review); err != nil {
			return CaseResult{}, fmt.Errorf("request: not a TokenReview: %w", err)
		}
	}
	m, err := r.envelopeModule(ctx, envelope.ExportAuthn)
	if err != nil {
		return CaseResult{}, err
	}
	token := review.Spec.Token
	resp, ok, err := hook.Authenticate(ctx, hook.Module{Module: m, Settings: settings}, token, review.Spec.Audiences) // err never holds the token
	decision := "not authenticated: the next authenticator is asked"
	switch {
	case err != nil:
		decision = "not authenticated: the module failed, the next authenticator is asked"
	case ok:
		u := resp.User
		decision = fmt.Sprintf("authenticated as %q (uid %q, groups %v)", u.GetName(), u.GetUID(), u.GetGroups())
	}
	out := checkFailure(CaseResult{Name: c.Name, Decision: decision}, c.Expect.Error, err)
	e := c.Expect
	if e.Authenticated != nil && ok != *e.Authenticated {
		out.Mismatches = append(out.Mismatches, fmt.Sprintf("authenticated: want %v, got %v", *e.Authenticated, ok))
	}
	if want := e.User; want != nil {
		switch {
		case !ok:
			out.Mismatches = append(out.Mismatches, fmt.Sprintf("user: want %q, not authenticated", want.Username))
		default:
			u := resp.User
			if u.GetName() != want.Username || want.UID != "" && u.GetUID() != want.UID || want.Groups != nil && !slices.Equal(u.GetGroups(), want.Groups) {
				out.Mismatches = append(out.Mismatches, fmt.Sprintf("user: want %q (uid %q, groups %v), got %q (uid %q, groups %v)",
					want.Username, want.UID, want.Groups, u.GetName(), u.GetUID(), u.GetGroups()))
			}
		}
	}
	return out, nil
}

func (r *suiteRunner) authz(ctx context.Context, c profiles.TestCase, settings json.RawMessage) (CaseResult, error) {
	var review authorizationv1.SubjectAccessReview
	if err := json.Unmarshal(c.Request, &review); err != nil {
		return CaseResult{}, fmt.Errorf("request: not a SubjectAccessReview: %w", err)
	}
	m, err := r.envelopeModule(ctx, envelope.ExportAuthz)
	if err != nil {
		return CaseResult{}, err
	}
	am := hook.AuthzModule{Module: hook.Module{Module: m, Settings: settings}}
	answer, callErr := envelope.ReviewAccess(ctx, m, settings, &review)
	d, reason, err := hook.DecideAuthz(am, answer, callErr)
	name := hook.DecisionName(d)
	failure := err
	if failure == nil {
		failure = callErr
	}
	out := checkFailure(CaseResult{Name: c.Name, Decision: fmt.Sprintf("%s (reason %q)", name, reason)}, c.Expect.Error, failure)
	if e := c.Expect; e.Decision != "" && e.Decision != name {
		out.Mismatches = append(out.Mismatches, fmt.Sprintf("decision: want %s, got %s (reason %q)", e.Decision, name, reason))
	}
	if e := c.Expect; e.Reason != "" && !strings.Contains(reason, e.Reason) {
		out.Mismatches = append(out.Mismatches, fmt.Sprintf("reason: want it to contain %q, got %q", e.Reason, reason))
	}
	return out, nil
}
