package profiles

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// TestSuiteKind is the kind of a module test suite (apiVersion wasmkube.dev/v1alpha1), the
// document `wasmkube module test` runs: one module, and cases of a request and what the API
// server must decide (docs/authoring.md, "Test suites").
const TestSuiteKind = "ModuleTestSuite"

// The hooks a suite's module serves, named as `wasmkube module run --hook` names them.
const (
	SuiteHookAuthn    = "authn"
	SuiteHookAuthz    = "authz"
	SuiteHookValidate = "validate"
)

// TestSuite is a module test suite.
type TestSuite struct {
	// APIVersion must be wasmkube.dev/v1alpha1.
	APIVersion string `json:"apiVersion"`
	// Kind must be ModuleTestSuite.
	Kind string `json:"kind"`
	// Module is the module under test: a .wasm file, relative to the suite's directory, or
	// builtin:NAME.
	Module string `json:"module"`
	// Hook is what the module serves: authn, authz or validate (admission, validating or
	// mutating).
	Hook string `json:"hook"`
	// Type is the module's ABI: envelope (the default) or kubewarden (hook validate).
	Type string `json:"type,omitempty"`
	// Mutating runs the module in the mutating phase, where it may patch. A Kubewarden policy's
	// metadata says so when this is not set.
	Mutating *bool `json:"mutating,omitempty"`
	// ExecutionMode is a Kubewarden policy's mode when its metadata names none.
	ExecutionMode string `json:"executionMode,omitempty"`
	// Entrypoint names a Rego policy's entrypoint (see AdmissionModule.Entrypoint).
	Entrypoint string `json:"entrypoint,omitempty"`
	// Settings are sent with every case that has none of its own.
	Settings json.RawMessage `json:"settings,omitempty"`
	// Cases run in order.
	Cases []TestCase `json:"cases"`
}

// TestCase is one request and what must come of it. The request is either whole (Request) or,
// for admission, an object with an operation and a user, and for authentication a token.
type TestCase struct {
	// Name says what the case shows; unique within the suite.
	Name string `json:"name"`
	// Settings replace the suite's for this case.
	Settings json.RawMessage `json:"settings,omitempty"`
	// Request is the whole review: a TokenReview (authn), a SubjectAccessReview (authz) or an
	// AdmissionReview (validate).
	Request json.RawMessage `json:"request,omitempty"`
	// Operation is the admission request's: CREATE (the default), UPDATE, DELETE or CONNECT.
	Operation string `json:"operation,omitempty"`
	// Object is the object of an admission request (CREATE and UPDATE); its kind, namespace
	// and name make the request's.
	Object json.RawMessage `json:"object,omitempty"`
	// OldObject is the object before an UPDATE or DELETE.
	OldObject json.RawMessage `json:"oldObject,omitempty"`
	// User sends an admission request (default: kubernetes-admin in system:masters).
	User *TestUser `json:"user,omitempty"`
	// Token is the bearer token of an authentication request.
	Token string `json:"token,omitempty"`
	// Expect is what the API server must decide.
	Expect TestExpectation `json:"expect"`
}

// TestUser is a user: who sends an admission request, or whom a token authenticates.
type TestUser struct {
	Username string   `json:"username"`
	UID      string   `json:"uid,omitempty"`
	Groups   []string `json:"groups,omitempty"`
}

// TestExpectation is what a case expects; fields left out are not checked.
type TestExpectation struct {
	// Allowed: admission admits (true) or denies (false) the request.
	Allowed *bool `json:"allowed,omitempty"`
	// Message is a substring of the denial's message.
	Message string `json:"message,omitempty"`
	// Code is the denial's HTTP status code.
	Code *int32 `json:"code,omitempty"`
	// Object is the object as the module's patch leaves it (compared as JSON values).
	Object json.RawMessage `json:"object,omitempty"`
	// Warnings are the warnings the client gets, in order.
	Warnings []string `json:"warnings,omitempty"`
	// AuditAnnotations are the audit annotations recorded (keys as the audit log has them).
	AuditAnnotations map[string]string `json:"auditAnnotations,omitempty"`
	// Authenticated: the token authenticates (true) or not (false).
	Authenticated *bool `json:"authenticated,omitempty"`
	// User is whom the token authenticates; groups as the server sees them.
	User *TestUser `json:"user,omitempty"`
	// Decision is the authorization decision: Allow, Deny or NoOpinion.
	Decision string `json:"decision,omitempty"`
	// Reason is a substring of the authorization decision's reason.
	Reason string `json:"reason,omitempty"`
	// Error is a substring of the module's failure: the case expects the call to fail (the
	// server then applies the module's failure policy). Without it, a failure fails the case.
	Error string `json:"error,omitempty"`
}

// LoadedSuite is a parsed suite and where it came from.
type LoadedSuite struct {
	*TestSuite
	// Source is the suite's path.
	Source string
}

// ResolvePath makes a path of the suite absolute against the suite's directory.
func (s *LoadedSuite) ResolvePath(p string) string {
	if filepath.IsAbs(p) || s.Source == "" {
		return p
	}
	return filepath.Join(filepath.Dir(s.Source), p)
}

// LoadTestSuite reads and parses the suite at path (ParseTestSuite).
func LoadTestSuite(path string) (*LoadedSuite, error) {
	data, abs, err := readDocument(path, "test suite")
	if err != nil {
		return nil, err
	}
	return ParseTestSuite(data, abs)
}

// ParseTestSuite decodes a suite strictly and validates it; source names it in errors.
//
// # Notes
//
//   - As for profiles, an unknown or duplicated field, a wrong type or an invalid value is an
//     error naming the file, the line and the field.
//   - A case gives its request whole or in the shorthand of its hook, not both, and expects
//     only what its hook decides.
func ParseTestSuite(data []byte, source string) (*LoadedSuite, error) {
	const what = "test suite"
	lines, err := newLineIndex(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: not valid YAML: %w", what, source, err)
	}
	if err := checkKind(data, what, source, lines, TestSuiteKind); err != nil {
		return nil, err
	}
	s := &TestSuite{}
	if err := decodeStrict(data, what, source, lines, s, func() field.ErrorList { return validateSuite(s) }); err != nil {
		return nil, err
	}
	return &LoadedSuite{TestSuite: s, Source: source}, nil
}

var (
	suiteHooks  = []string{SuiteHookAuthn, SuiteHookAuthz, SuiteHookValidate}
	suiteOps    = []string{"CREATE", "UPDATE", "DELETE", "CONNECT"}
	authzResult = []string{"Allow", "Deny", "NoOpinion"}
)

func validateSuite(s *TestSuite) field.ErrorList {
	var errs field.ErrorList
	if s.Module == "" {
		errs = append(errs, field.Required(field.NewPath("module"), "a .wasm file (relative to the suite) or builtin:NAME"))
	}
	if !sets.New(suiteHooks...).Has(s.Hook) {
		errs = append(errs, field.NotSupported(field.NewPath("hook"), s.Hook, suiteHooks))
	}
	switch s.Type {
	case "", TypeEnvelope:
		if s.Entrypoint != "" {
			errs = append(errs, field.Forbidden(field.NewPath("entrypoint"), "only a Kubewarden policy (type: kubewarden) has an entrypoint"))
		}
		if s.ExecutionMode != "" {
			errs = append(errs, field.Forbidden(field.NewPath("executionMode"), "only a Kubewarden policy (type: kubewarden) has an execution mode"))
		}
	case TypeKubewarden:
		if s.Hook != SuiteHookValidate {
			errs = append(errs, field.Invalid(field.NewPath("hook"), s.Hook, "a Kubewarden policy answers admission requests: use hook: validate"))
		}
	default:
		errs = append(errs, field.NotSupported(field.NewPath("type"), s.Type, []string{TypeEnvelope, TypeKubewarden}))
	}
	if s.Mutating != nil && s.Hook != SuiteHookValidate {
		errs = append(errs, field.Forbidden(field.NewPath("mutating"), "only admission modules (hook: validate) mutate"))
	}
	if len(s.Cases) == 0 {
		errs = append(errs, field.Required(field.NewPath("cases"), "at least one case"))
	}
	names := map[string]int{}
	for i, c := range s.Cases {
		p := field.NewPath("cases").Index(i)
		if c.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), "what the case shows"))
		} else if first, ok := names[c.Name]; ok {
			errs = append(errs, field.Duplicate(p.Child("name"), fmt.Sprintf("%s (cases[%d] has it too)", c.Name, first)))
		} else {
			names[c.Name] = i
		}
		errs = append(errs, validateCase(s.Hook, c, p)...)
	}
	return errs
}

// validateCase checks that c gives its request one way and expects what its hook decides.
func validateCase(hook string, c TestCase, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	shorthand := map[string]bool{"operation": c.Operation != "", "object": len(c.Object) > 0,
		"oldObject": len(c.OldObject) > 0, "user": c.User != nil, "token": c.Token != ""}
	allowed := map[string][]string{SuiteHookValidate: {"operation", "object", "oldObject", "user"}, SuiteHookAuthn: {"token"}}[hook]
	given := false
	for _, name := range []string{"operation", "object", "oldObject", "user", "token"} {
		if !shorthand[name] {
			continue
		}
		given = true
		if !sets.New(allowed...).Has(name) {
			errs = append(errs, field.Forbidden(p.Child(name), fmt.Sprintf("not a field of a hook %s case; give the whole review as request", hook)))
		}
	}
	switch {
	case given && len(c.Request) > 0:
		errs = append(errs, field.Forbidden(p.Child("request"), "give the whole review as request, or the case's shorthand fields, not both"))
	case !given && len(c.Request) == 0:
		errs = append(errs, field.Required(p.Child("request"), requestHint(hook)))
	}
	if hook == SuiteHookValidate && len(c.Request) == 0 {
		errs = append(errs, validateShorthand(c, p)...)
	}
	return append(errs, validateExpect(hook, c.Expect, p.Child("expect"))...)
}

func requestHint(hook string) string {
	switch hook {
	case SuiteHookAuthn:
		return "a TokenReview, or token: the bearer token"
	case SuiteHookAuthz:
		return "a SubjectAccessReview"
	}
	return "an AdmissionReview, or object (and operation, oldObject, user)"
}

func validateShorthand(c TestCase, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	op := c.Operation
	if op == "" {
		op = "CREATE"
	}
	if !sets.New(suiteOps...).Has(op) {
		return append(errs, field.NotSupported(p.Child("operation"), c.Operation, suiteOps))
	}
	if (op == "CREATE" || op == "UPDATE" || op == "CONNECT") && len(c.Object) == 0 {
		errs = append(errs, field.Required(p.Child("object"), "the object of a "+op))
	}
	if (op == "UPDATE" || op == "DELETE") && len(c.OldObject) == 0 {
		errs = append(errs, field.Required(p.Child("oldObject"), "the object before the "+strings.ToLower(op)))
	}
	for name, raw := range map[string]json.RawMessage{"object": c.Object, "oldObject": c.OldObject} {
		if len(raw) == 0 {
			continue
		}
		var obj struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil || obj.APIVersion == "" || obj.Kind == "" {
			errs = append(errs, field.Invalid(p.Child(name), "", "an object with apiVersion and kind"))
		}
	}
	return errs
}

func validateExpect(hook string, e TestExpectation, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	set := map[string]bool{"allowed": e.Allowed != nil, "message": e.Message != "", "code": e.Code != nil,
		"object": len(e.Object) > 0, "warnings": e.Warnings != nil, "auditAnnotations": e.AuditAnnotations != nil,
		"authenticated": e.Authenticated != nil, "user": e.User != nil, "decision": e.Decision != "", "reason": e.Reason != "",
		"error": e.Error != ""}
	fields := map[string][]string{
		SuiteHookValidate: {"allowed", "message", "code", "object", "warnings", "auditAnnotations", "error"},
		SuiteHookAuthn:    {"authenticated", "user", "error"},
		SuiteHookAuthz:    {"decision", "reason", "error"},
	}[hook]
	expected := false
	for _, name := range []string{"allowed", "message", "code", "object", "warnings", "auditAnnotations", "authenticated", "user", "decision", "reason", "error"} {
		if !set[name] {
			continue
		}
		expected = true
		if !sets.New(fields...).Has(name) {
			errs = append(errs, field.Forbidden(p.Child(name), fmt.Sprintf("a hook %s case expects only %s", hook, strings.Join(fields, ", "))))
		}
	}
	if !expected && len(fields) > 0 {
		errs = append(errs, field.Required(p, "what must come of the request: "+strings.Join(fields, ", ")))
	}
	if e.Decision != "" && !sets.New(authzResult...).Has(e.Decision) {
		errs = append(errs, field.NotSupported(p.Child("decision"), e.Decision, authzResult))
	}
	return errs
}
