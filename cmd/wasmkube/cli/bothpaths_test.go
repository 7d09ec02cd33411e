package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/wasmkube/wasmkube"
	examplemodules "github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm/kubewarden"
)

// TestBothPaths sends every example's request (examples/*/request.yaml) through both decision
// paths and compares what they decide:
//
//   - offline: `wasmkube module run`, with the arguments its README shows (through the CLI entry
//     point, as the other tests run it);
//   - the server: one live cluster whose profile lists every example module (builtin:NAME) with
//     the settings its README passes, where the request is sent as the real API request it
//     describes.
//
// Authentication: a TokenReview with the example's token, and a SelfSubjectReview made with it
// as bearer token (the user the server sees). Authorization: the SubjectAccessReview itself, and
// the request it describes, made as its user (impersonation). Admission: the object of the
// AdmissionReview, created (dry-run) as its user in its namespace; compared are the decision,
// HTTP code and message, the change to the object (the patch module run prints, applied to the
// request's object, against what the server made of the object compared with the same request
// no module saw), the warnings (client-go's warning handler) and the module's audit annotations
// (the server's audit log).
//
// Besides each example's request as written, the rows hold the changes its README suggests
// (requestVariants) and magic-mutate run as a validating module (a module failure).
//
// Not compared: a context-aware Kubewarden policy (its decision depends on the cluster, which
// `module run` does not have); UPDATE and DELETE requests (none so far: they need the old
// object); the audiences of a TokenReview that names none (the server then uses its own);
// the patch's text and type (the server shows only its effect). Only one module of each hook
// decides: a request a module leaves to the next authenticator or authorizer is answered by the
// rest of the server's chain.
//
// So that each request meets only its own example's module, the admission modules are selected
// by a match condition on the extra `bothpaths-example` of the impersonated user; the modules
// see that extra, and dryRun: true, where `module run` sends the request as written.
func TestBothPaths(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	examples := readExamples(t, root)
	examples = append(examples, validatingMutator(t, examples))
	bp := startBothPaths(t, examples)
	for _, ex := range append(examples, variants(t, examples)...) {
		t.Run(ex.row, func(t *testing.T) {
			if ex.skip != "" {
				t.Skip(ex.skip)
			}
			switch ex.hook {
			case "authn":
				bp.authn(t, ex)
			case "authz":
				bp.authz(t, ex)
			default:
				bp.admission(t, ex)
			}
		})
	}
}

// exampleKey is the extra of the impersonated user that selects one example's admission module.
const exampleKey = "bothpaths-example"

// bothPathsExample is one example, or one variant of its request: its `module run` command and
// what its profile entry needs.
type bothPathsExample struct {
	// name is the example's (its module's) name; row is the name of the table row: name, or
	// name+VARIANT.
	name, row string
	// builtin is the example the module is: name, but for a renamed copy.
	builtin string
	// args are `module run`'s arguments, as the README shows them, with absolute paths.
	args       []string
	hook       string
	kubewarden bool
	mutating   bool
	settings   json.RawMessage
	request    []byte // JSON
	// skip, when set, is why the example cannot go through both paths.
	skip string
}

// readExamples reads every example's `go run ./cmd/wasmkube module run …` command from its
// README, and the request and settings it names.
func readExamples(t *testing.T, root string) []bothPathsExample {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(root, "examples", "*", "README.md"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no examples under %s: %v", root, err)
	}
	var out []bothPathsExample
	for _, readme := range dirs {
		ex := bothPathsExample{name: filepath.Base(filepath.Dir(readme))}
		ex.row, ex.builtin = ex.name, ex.name
		text, err := os.ReadFile(readme)
		if err != nil {
			t.Fatal(err)
		}
		if ex.args, err = moduleRunCommand(string(text), root); err != nil {
			t.Fatalf("%s: %v", readme, err)
		}
		var wasmPath, requestPath, settingsPath string
		wasmPath = ex.args[2]
		for i := 3; i < len(ex.args); i++ {
			next := func() string {
				if i+1 >= len(ex.args) {
					t.Fatalf("%s: %s needs a value", readme, ex.args[i])
				}
				i++
				return ex.args[i]
			}
			switch ex.args[i] {
			case "--hook":
				ex.hook = next()
			case "--request":
				requestPath = next()
			case "--settings":
				settingsPath = next()
			case "--type":
				ex.kubewarden = next() == typeKubewarden
			case "--mutating":
				ex.mutating = true
			default:
				t.Fatalf("%s: the test does not know what `module run %s` means for the server", readme, ex.args[i])
			}
		}
		if ex.request, err = readDoc(requestPath, nil); err != nil {
			t.Fatal(err)
		}
		if settingsPath != "" {
			if ex.settings, err = readDoc(settingsPath, nil); err != nil {
				t.Fatal(err)
			}
		}
		if ex.kubewarden {
			bin, err := os.ReadFile(wasmPath)
			if err != nil {
				t.Fatal(err)
			}
			md, _, err := kubewarden.ReadMetadata(bin)
			if err != nil || md == nil {
				t.Fatalf("%s: no Kubewarden metadata: %v", wasmPath, err)
			}
			ex.mutating = ex.mutating || md.Mutating
			if len(md.ContextAwareResources) > 0 {
				ex.skip = "a context-aware policy: its decision depends on what it reads from the cluster, and `module run` has no cluster " +
					"(offline its lookups are refused, or fail with --allow-context-aware), so the two paths differ by design"
			}
		}
		out = append(out, ex)
	}
	return out
}

// requestVariants are the changes the READMEs suggest making to the requests ("Change the token
// …", "Add annotations: {owner: me} …"), as JSON merge patches of request.yaml: with them the
// table also compares warnings, audit annotations, NoOpinion, not authenticated and a patch
// that adds less. (A token the module leaves to the next authenticator is not among them: the
// server's answer would be the rest of its chain's.)
var requestVariants = []struct{ example, variant, patch string }{
	{"magic-authn", "other-token", `{"spec":{"token":"other-token"}}`},
	{"hmac-authn", "bad-signature", `{"spec":{"token":"v1.eyJzdWIiOiJhbGljZSIsInVpZCI6IjEwMDEiLCJncm91cHMiOlsiZGV2Il0sImlzcyI6InBsYXRmb3JtIiwiZXhwIjo0MTAyNDQ0ODAwfQ.c2lnbmVkIHdpdGggYW5vdGhlciBzZWNyZXQ"}}`},
	{"magic-authz", "pods", `{"spec":{"resourceAttributes":{"resource":"pods"}}}`},
	{"magic-mutate", "no-data", `{"request":{"object":{"data":null}}}`},
	{"magic-validate", "renamed-key", `{"request":{"object":{"data":{"not-allowed-value":null,"other-value":"abc"}}}}`},
	{"default-labels", "owner-me", `{"request":{"object":{"metadata":{"labels":{"owner":"me"}}}}}`},
	{"safe-annotations", "owner", `{"request":{"object":{"metadata":{"annotations":{"owner":"me"}}}}}`},
	{"safe-annotations", "owner-and-description", `{"request":{"object":{"metadata":{"annotations":{"owner":"me","description":"d"}}}}}`},
	{"safe-annotations", "forbidden", `{"request":{"object":{"metadata":{"annotations":{"owner":"me","debug.example.com/unsafe":"x"}}}}}`},
	{"workload-policy", "allowed-registry", `{"request":{"object":{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"ghcr.io/acme/web:latest"}]}}}}}}`},
	{"workload-policy", "pinned", `{"request":{"object":{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"ghcr.io/acme/web:1.2.3"}]}}}}}}`},
	{"workload-policy", "no-team", `{"request":{"object":{"metadata":{"labels":{"team":null}}}}}`},
}

// variants are the rows of requestVariants: the example's command with the changed request.
func variants(t *testing.T, examples []bothPathsExample) []bothPathsExample {
	t.Helper()
	dir := t.TempDir()
	var out []bothPathsExample
	for _, v := range requestVariants {
		i := slices.IndexFunc(examples, func(ex bothPathsExample) bool { return ex.name == v.example })
		if i < 0 {
			t.Fatalf("variant %s of a missing example %s", v.variant, v.example)
		}
		ex := examples[i]
		ex.row = ex.name + "+" + v.variant
		var err error
		if ex.request, err = jsonpatch.MergePatch(ex.request, []byte(v.patch)); err != nil {
			t.Fatalf("%s: %v", ex.row, err)
		}
		file := filepath.Join(dir, ex.row+".json")
		if err := os.WriteFile(file, ex.request, 0o600); err != nil {
			t.Fatal(err)
		}
		ex.args = slices.Clone(ex.args)
		ex.args[slices.Index(ex.args, "--request")+1] = file
		out = append(out, ex)
	}
	return out
}

// validatingMutator is magic-mutate run as a validating module, as its README suggests
// ("Without --mutating the host refuses the answer"): a module failure (500) on both paths.
// `module run` names a module after its file: the copy is magic-mutate-validating.wasm, and the
// server's entry has that name.
func validatingMutator(t *testing.T, examples []bothPathsExample) bothPathsExample {
	t.Helper()
	i := slices.IndexFunc(examples, func(ex bothPathsExample) bool { return ex.name == "magic-mutate" })
	if i < 0 {
		t.Fatal("no example magic-mutate")
	}
	ex := examples[i]
	ex.name = ex.builtin + "-validating"
	ex.row, ex.mutating = ex.name, false
	bin, err := os.ReadFile(ex.args[2])
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), ex.name+".wasm")
	if err := os.WriteFile(file, bin, 0o600); err != nil {
		t.Fatal(err)
	}
	ex.args = slices.DeleteFunc(slices.Clone(ex.args), func(a string) bool { return a == "--mutating" })
	ex.args[2] = file
	return ex
}

// moduleRunCommand finds the first `go run ./cmd/wasmkube module run …` command of a README
// (continuation lines joined) and returns its arguments, examples/… paths made absolute.
func moduleRunCommand(readme, root string) ([]string, error) {
	const prefix = "go run ./cmd/wasmkube "
	lines := strings.Split(readme, "\n")
	for i := 0; i < len(lines); i++ {
		cmd := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(cmd, prefix+"module run ") {
			continue
		}
		for strings.HasSuffix(cmd, `\`) && i+1 < len(lines) {
			i++
			cmd = strings.TrimSuffix(cmd, `\`) + " " + strings.TrimSpace(lines[i])
		}
		args := strings.Fields(strings.TrimPrefix(cmd, prefix))
		for j, a := range args {
			if strings.HasPrefix(a, "examples/") {
				args[j] = filepath.Join(root, filepath.FromSlash(a))
			}
		}
		if len(args) < 3 {
			return nil, fmt.Errorf("`%s`: no module", cmd)
		}
		return args, nil
	}
	return nil, errors.New("no `go run ./cmd/wasmkube module run …` command")
}

// bothPaths is the cluster and the environment `module run` runs in.
type bothPaths struct {
	env      *env
	cluster  *wasmkube.Cluster
	auditLog string
}

// startBothPaths starts one cluster whose profile lists every example's module as its README
// runs it, and grants the admission examples' users what their requests need.
func startBothPaths(t *testing.T, examples []bothPathsExample) *bothPaths {
	t.Helper()
	bp := &bothPaths{env: newEnv(t)}
	dir := t.TempDir()
	bp.auditLog = filepath.Join(dir, "audit.log")
	policy := "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"
	if err := os.WriteFile(filepath.Join(dir, "audit-policy.yaml"), []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	p := profiles.Profile{
		APIVersion: profiles.APIVersion, Kind: profiles.Kind, Name: "bothpaths", Port: ptr.To[int32](0),
		Controllers:    profiles.Controllers{Enabled: ptr.To(false)},
		Authentication: &profiles.Authentication{},
		Authorization:  &profiles.Authorization{Chain: []string{"Node", "RBAC", "WASM"}},
		Admission:      &profiles.Admission{},
	}
	for _, ex := range examples {
		if ex.skip != "" {
			continue
		}
		m := profiles.Module{Module: profiles.BuiltinPrefix + ex.builtin, Settings: ex.settings}
		if ex.builtin != ex.name {
			m.Name = ex.name
		}
		switch ex.hook {
		case "authn":
			p.Authentication.Modules = append(p.Authentication.Modules, m)
		case "authz":
			p.Authorization.Modules = append(p.Authorization.Modules, profiles.AuthorizationModule{Module: m})
		default:
			p.Admission.Modules = append(p.Admission.Modules, admissionEntry(t, ex, m))
		}
	}
	doc, err := yaml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "bothpaths.yaml")
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := profiles.LoadFile(file)
	if err != nil {
		t.Fatalf("the test's profile:\n%s\n%v", doc, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bp.cluster, err = wasmkube.Up(ctx, loaded, wasmkube.Options{
		BuiltinModules: examplemodules.FS(), DataDir: filepath.Join(dir, "data"), Port: ptr.To[int32](0),
		// The cache `module run` uses in this environment: each module is compiled once.
		ModuleCacheDir: filepath.Join(bp.env.root, "cache", "wasmkube", "modules"),
		APIServerArgs:  []string{"--audit-policy-file=" + filepath.Join(dir, "audit-policy.yaml"), "--audit-log-path=" + bp.auditLog},
		Progress:       func(s wasmkube.Step) { t.Logf("up: %s %s %s", s.Name, s.Duration.Round(time.Millisecond), s.Detail) },
	})
	if err != nil {
		t.Fatalf("start the cluster of profile:\n%s\n%v", doc, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := bp.cluster.Stop(ctx); err != nil {
			t.Errorf("stop the cluster: %v", err)
		}
	})
	bp.grantCreate(t, examples)
	return bp
}

// admissionEntry is an admission example's profile entry: its module, selected for the requests
// of its example only. An envelope module gets the rules of its request; a Kubewarden policy
// has its metadata's, as in the kubewarden-demo profile.
func admissionEntry(t *testing.T, ex bothPathsExample, m profiles.Module) profiles.AdmissionModule {
	t.Helper()
	e := profiles.AdmissionModule{
		Module: m, Mutating: ptr.To(ex.mutating),
		MatchConditions: []admissionregistrationv1.MatchCondition{{
			Name: "this-example",
			Expression: fmt.Sprintf("has(request.userInfo.extra) && %q in request.userInfo.extra && request.userInfo.extra[%q].exists(v, v == %q || v.startsWith(%q))",
				exampleKey, exampleKey, ex.name, ex.name+"+"),
		}},
	}
	if ex.kubewarden {
		e.Type = "kubewarden"
		return e
	}
	req := admissionRequest(t, ex)
	e.Rules = []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.OperationType(req.Operation)},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{req.Resource.Group}, APIVersions: []string{req.Resource.Version},
			Resources: []string{req.Resource.Resource}},
	}}
	return e
}

func admissionRequest(t *testing.T, ex bothPathsExample) *admissionv1.AdmissionRequest {
	t.Helper()
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(ex.request, &review); err != nil || review.Request == nil {
		t.Fatalf("%s: not an AdmissionReview with a request: %v", ex.name, err)
	}
	return review.Request
}

// grantCreate lets each admission example's user create (CREATE requests) what its request
// creates: the request must reach admission. The variants change neither.
func (bp *bothPaths) grantCreate(t *testing.T, examples []bothPathsExample) {
	t.Helper()
	ctx := context.Background()
	c := kubernetes.NewForConfigOrDie(bp.cluster.RESTConfig)
	for i, ex := range examples {
		if ex.skip != "" || ex.hook != "validate" {
			continue
		}
		req := admissionRequest(t, ex)
		if slices.Contains(req.UserInfo.Groups, "system:masters") || req.Namespace == "" {
			continue
		}
		name := fmt.Sprintf("bothpaths-%d", i)
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{req.Resource.Group}, Resources: []string{req.Resource.Resource}, Verbs: []string{"create"},
		}}}
		if _, err := c.RbacV1().Roles(req.Namespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: req.UserInfo.Username}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		}
		if _, err := c.RbacV1().RoleBindings(req.Namespace).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// moduleRun runs the example's `module run` and returns what follows "decision: " (and the
// output before it).
func (bp *bothPaths) moduleRun(t *testing.T, ex bothPathsExample) (before, decision string) {
	t.Helper()
	code, out, stderr := bp.env.run(ex.args...)
	loc := regexp.MustCompile(`(?m)^decision: `).FindStringIndex(out)
	if loc == nil {
		t.Fatalf("module run %v: exit %d, no decision:\n%s\n%s", ex.args[2:], code, out, stderr)
	}
	if code != 0 {
		t.Logf("module run exited with %d: %s", code, stderr)
	}
	return out[:loc[0]], strings.TrimSuffix(out[loc[1]:], "\n")
}

// compareFields fails t with one line per field in which the two paths differ.
func compareFields(t *testing.T, offline, server any) {
	t.Helper()
	o, s := reflect.ValueOf(offline), reflect.ValueOf(server)
	var diffs []string
	for i := range o.NumField() {
		a, b := o.Field(i).Interface(), s.Field(i).Interface()
		if !reflect.DeepEqual(a, b) {
			diffs = append(diffs, fmt.Sprintf("%s:\n    module run: %#v\n    server:     %#v", o.Type().Field(i).Name, a, b))
		}
	}
	if len(diffs) > 0 {
		t.Errorf("the two paths differ:\n  %s", strings.Join(diffs, "\n  "))
	}
}

// authnResult is what an authentication decision says.
type authnResult struct {
	Authenticated bool
	Username, UID string
	Groups        []string
	Extra         map[string][]string
	Audiences     []string
}

var authenticatedAs = regexp.MustCompile(`^authenticated as ("(?:[^"\\]|\\.)*") \(uid ("(?:[^"\\]|\\.)*"), groups \[(.*)\], audiences \[(.*)\]\)$`)

func (bp *bothPaths) authn(t *testing.T, ex bothPathsExample) {
	var review authenticationv1.TokenReview
	if err := json.Unmarshal(ex.request, &review); err != nil {
		t.Fatal(err)
	}
	// Offline: the decision line, and the extra of the module's answer (DecideAuthn passes it on
	// as it is; the decision line does not show it).
	before, decision := bp.moduleRun(t, ex)
	var offline authnResult
	if m := authenticatedAs.FindStringSubmatch(decision); m != nil {
		offline = authnResult{Authenticated: true, Groups: strings.Fields(m[3]), Audiences: strings.Fields(m[4])}
		offline.Username, _ = strconv.Unquote(m[1])
		offline.UID, _ = strconv.Unquote(m[2])
		var answer authenticationv1.TokenReview
		if err := json.Unmarshal([]byte(strings.TrimPrefix(before, "module answer:\n")), &answer); err != nil {
			t.Fatalf("module answer: %v\n%s", err, before)
		}
		offline.Extra = extraOf(answer.Status.User.Extra)
	} else if !strings.HasPrefix(decision, "not authenticated") {
		t.Fatalf("module run: unexpected decision %q", decision)
	}

	// The server: the TokenReview it answers, and the user a request with the token is.
	ctx := context.Background()
	admin := kubernetes.NewForConfigOrDie(bp.cluster.RESTConfig)
	tr, err := admin.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: review.Spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenReview: %v", err)
	}
	server := authnResult{Authenticated: tr.Status.Authenticated}
	cfg := rest.AnonymousClientConfig(bp.cluster.RESTConfig)
	cfg.BearerToken = review.Spec.Token
	ssr, err := kubernetes.NewForConfigOrDie(cfg).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	switch {
	case err == nil:
		u := ssr.Status.UserInfo
		server.Username, server.UID, server.Groups, server.Extra = u.Username, u.UID, u.Groups, extraOf(u.Extra)
		if !tr.Status.Authenticated || tr.Status.User.Username != u.Username {
			t.Errorf("the server's TokenReview (%+v) and the user of a request with the token (%+v) differ", tr.Status, u)
		}
	case apierrors.IsUnauthorized(err):
		if tr.Status.Authenticated {
			t.Errorf("the TokenReview authenticated %+v, a request with the token is unauthorized", tr.Status.User)
		}
	default:
		t.Fatalf("SelfSubjectReview with the token: %v", err)
	}
	// A TokenReview without audiences is answered for the API server's audiences (the
	// authenticator gets them); `module run` sends the review as written.
	switch {
	case !server.Authenticated:
		offline.Audiences = nil
	case len(review.Spec.Audiences) > 0:
		server.Audiences = tr.Status.Audiences
	default:
		t.Logf("audiences not compared: the request names none, so the server uses its own (%v); module run: %v", tr.Status.Audiences, offline.Audiences)
		offline.Audiences = nil
	}
	compareFields(t, offline, server)
	t.Logf("both: %+v", offline)
}

func extraOf[V ~[]string](m map[string]V) map[string][]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = []string(v)
	}
	return out
}

// authzResult is what an authorization decision says.
type authzResult struct {
	Decision string // Allow, Deny or NoOpinion
	Reason   string
}

var authzDecision = regexp.MustCompile(`^(Allow|Deny|NoOpinion) \(reason ("(?:[^"\\]|\\.)*")\)`)

func (bp *bothPaths) authz(t *testing.T, ex bothPathsExample) {
	var review authorizationv1.SubjectAccessReview
	if err := json.Unmarshal(ex.request, &review); err != nil {
		t.Fatal(err)
	}
	_, decision := bp.moduleRun(t, ex)
	m := authzDecision.FindStringSubmatch(decision)
	if m == nil {
		t.Fatalf("module run: unexpected decision %q", decision)
	}
	offline := authzResult{Decision: m[1]}
	offline.Reason, _ = strconv.Unquote(m[2])

	// The server: the SubjectAccessReview as the chain (Node, RBAC, WASM) answers it. Neither Node
	// nor RBAC has an opinion about the example's user, so the module decides.
	ctx := context.Background()
	admin := kubernetes.NewForConfigOrDie(bp.cluster.RESTConfig)
	sar, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: review.Spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SubjectAccessReview: %v", err)
	}
	server := authzResult{Decision: "NoOpinion", Reason: sar.Status.Reason}
	switch {
	case sar.Status.Allowed:
		server.Decision = "Allow"
	case sar.Status.Denied:
		server.Decision = "Deny"
	}
	compareFields(t, offline, server)

	// And the request the review describes, made as its user.
	ra := review.Spec.ResourceAttributes
	if ra == nil || (ra.Verb != "list" && ra.Verb != "get") || ra.Subresource != "" {
		t.Logf("the request itself not made: only get and list of resources are replayed (%+v)", ra)
		return
	}
	cfg := rest.CopyConfig(bp.cluster.RESTConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: review.Spec.User, UID: review.Spec.UID, Groups: review.Spec.Groups, Extra: extraOf(review.Spec.Extra)}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: ra.Group, Version: ra.Version, Resource: ra.Resource}
	ri := dynamic.ResourceInterface(client.Resource(gvr))
	if ra.Namespace != "" {
		ri = client.Resource(gvr).Namespace(ra.Namespace)
	}
	if ra.Verb == "list" {
		_, err = ri.List(ctx, metav1.ListOptions{})
	} else {
		_, err = ri.Get(ctx, ra.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			err = nil // authorized
		}
	}
	if allowed := err == nil; allowed != (offline.Decision == "Allow") {
		t.Errorf("module run decides %s; the request as %s: %v", offline.Decision, review.Spec.User, err)
	}
	// The audit event of the request records the decision and the reason; a module's NoOpinion
	// leaves both to the end of the chain.
	if offline.Decision != "NoOpinion" {
		e := bp.auditEvent(t, "the request as "+review.Spec.User, func(e auditEvent) bool {
			return e.Verb == ra.Verb && e.ObjectRef.Resource == ra.Resource && e.ObjectRef.Namespace == ra.Namespace && e.ImpersonatedUser.Username == review.Spec.User
		})
		want := map[string]string{"Allow": "allow", "Deny": "forbid"}[offline.Decision]
		if got := e.Annotations["authorization.k8s.io/decision"]; got != want {
			t.Errorf("the request's audit event: decision %q, module run: %s", got, offline.Decision)
		}
		if got := e.Annotations["authorization.k8s.io/reason"]; got != offline.Reason {
			t.Errorf("the request's audit event: reason %q, module run: %q", got, offline.Reason)
		}
	}
	t.Logf("both: %+v", offline)
}

// admissionResult is what an admission decision says.
type admissionResult struct {
	// Decision is allowed, denied (by the module) or rejected (the module failed; 500).
	Decision string
	// Code is the HTTP code of a denial or rejection.
	Code int32
	// Message is the message of a denial or rejection.
	Message string
	// Change is the change made to the object, as a JSON merge patch ("" when none): offline,
	// the printed patch applied to the request's object; on the server, the object it returned
	// against the one it returns for the same request no module sees.
	Change string
	// Warnings are the warnings to the client.
	Warnings []string
	// AuditAnnotations are the module's audit annotations (MODULE/KEY).
	AuditAnnotations map[string]string
}

var denialLine = regexp.MustCompile(`^(denied|rejected) \(HTTP (\d+)\): (.*)$`)

func (bp *bothPaths) admission(t *testing.T, ex bothPathsExample) {
	req := admissionRequest(t, ex)
	if req.Operation != admissionv1.Create {
		t.Skipf("a %s request needs the old object in the cluster as the request has it; only CREATE is replayed", req.Operation)
	}
	_, decision := bp.moduleRun(t, ex)
	offline := parseAdmissionDecision(t, decision, req.Object.Raw)
	server := bp.serverAdmission(t, ex, req)
	compareFields(t, offline, server)
	t.Logf("both: %+v", offline)
}

// parseAdmissionDecision reads describeAdmission's text; the patch is applied to object.
func parseAdmissionDecision(t *testing.T, decision string, object []byte) admissionResult {
	t.Helper()
	lines := strings.Split(decision, "\n")
	var r admissionResult
	switch first := lines[0]; {
	case first == "allowed":
		r.Decision = "allowed"
	case strings.HasPrefix(first, "allowed: the module failed"):
		r.Decision = "allowed (failed open)"
	default:
		m := denialLine.FindStringSubmatch(first)
		if m == nil {
			t.Fatalf("module run: unexpected decision %q", first)
		}
		code, _ := strconv.Atoi(m[2])
		r.Decision, r.Code, r.Message = m[1], int32(code), m[3]
	}
	fields := false
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, "patch ("):
			fields = true
			typ, patch, ok := strings.Cut(strings.TrimPrefix(l, "patch ("), "): ")
			if !ok {
				t.Fatalf("module run: patch line %q", l)
			}
			var patched []byte
			switch typ {
			case string(admissionv1.PatchTypeJSONPatch):
				ops, err := jsonpatch.DecodePatch([]byte(patch))
				if err == nil {
					patched, err = ops.Apply(object)
				}
				if err != nil {
					t.Fatalf("module run's patch %s does not apply to the request's object: %v", patch, err)
				}
			case "Full":
				patched = []byte(patch)
			default:
				t.Fatalf("module run: patch type %q", typ)
			}
			r.Change = mergeChange(t, object, patched)
		case strings.HasPrefix(l, "warning: "):
			fields = true
			r.Warnings = append(r.Warnings, strings.TrimPrefix(l, "warning: "))
		case strings.HasPrefix(l, "audit annotation "):
			fields = true
			k, v, _ := strings.Cut(strings.TrimPrefix(l, "audit annotation "), ": ")
			if r.AuditAnnotations == nil {
				r.AuditAnnotations = map[string]string{}
			}
			r.AuditAnnotations[k] = v
		case !fields && r.Message != "":
			r.Message += "\n" + l // a message of several lines
		default:
			t.Fatalf("module run: unexpected line %q in the decision:\n%s", l, decision)
		}
	}
	return r
}

// mergeChange is the JSON merge patch from before to after, the fields the server sets on every
// object left out; "" when they do not differ.
func mergeChange(t *testing.T, before, after []byte) string {
	t.Helper()
	prune := func(doc []byte) []byte {
		var obj map[string]any
		if err := json.Unmarshal(doc, &obj); err != nil {
			t.Fatalf("not a JSON object: %v\n%s", err, doc)
		}
		if md, ok := obj["metadata"].(map[string]any); ok {
			for _, f := range []string{"uid", "resourceVersion", "creationTimestamp", "managedFields", "generation"} {
				delete(md, f)
			}
		}
		out, _ := json.Marshal(obj)
		return out
	}
	patch, err := jsonpatch.CreateMergePatch(prune(before), prune(after))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(patch, &v); err != nil {
		t.Fatal(err)
	}
	if m, ok := v.(map[string]any); ok && len(m) == 0 {
		return ""
	}
	canonical, _ := json.Marshal(v) // sorted keys
	return string(canonical)
}

// serverAdmission creates the request's object, dry-run, as the request's user in its namespace,
// and reads what the server decided.
func (bp *bothPaths) serverAdmission(t *testing.T, ex bothPathsExample, req *admissionv1.AdmissionRequest) admissionResult {
	t.Helper()
	ctx := context.Background()
	var opts metav1.CreateOptions
	if len(req.Options.Raw) > 0 {
		if err := json.Unmarshal(req.Options.Raw, &opts); err != nil {
			t.Fatalf("request.options: %v", err)
		}
	}
	opts.DryRun = []string{metav1.DryRunAll}
	create := func(example string, warnings rest.WarningHandler) (*unstructured.Unstructured, error) {
		cfg := rest.CopyConfig(bp.cluster.RESTConfig)
		u := req.UserInfo
		cfg.Impersonate = rest.ImpersonationConfig{UserName: u.Username, UID: u.UID, Groups: u.Groups,
			Extra: map[string][]string{exampleKey: {example}}}
		for k, v := range u.Extra {
			cfg.Impersonate.Extra[k] = v
		}
		if warnings != nil {
			cfg.WarningHandler = warnings
		}
		client, err := dynamic.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(req.Object.Raw); err != nil {
			t.Fatalf("request.object: %v", err)
		}
		gvr := schema.GroupVersionResource{Group: req.Resource.Group, Version: req.Resource.Version, Resource: req.Resource.Resource}
		if req.Namespace == "" {
			return client.Resource(gvr).Create(ctx, obj, opts)
		}
		return client.Resource(gvr).Namespace(req.Namespace).Create(ctx, obj, opts)
	}
	warnings := &warningList{}
	created, err := create(ex.row, warnings)
	var r admissionResult
	var status apierrors.APIStatus
	switch {
	case err == nil:
		r.Decision = "allowed"
		control, err := create("none", nil)
		if err != nil {
			t.Fatalf("the same request, no module selected: %v", err)
		}
		before, _ := control.MarshalJSON()
		after, _ := created.MarshalJSON()
		r.Change = mergeChange(t, before, after)
	case errors.As(err, &status):
		s := status.Status()
		r.Decision, r.Code, r.Message = "denied", s.Code, s.Message
		if s.Code == 500 && s.Reason == metav1.StatusReasonInternalError {
			r.Decision = "rejected"
		}
	default:
		t.Fatalf("create: %v", err)
	}
	r.Warnings = warnings.get()
	r.AuditAnnotations = bp.auditAnnotations(t, ex.row, ex.name, req.Resource.Resource)
	if _, ok := r.AuditAnnotations[ex.name+"/failed-open"]; ok && r.Decision == "allowed" {
		r.Decision = "allowed (failed open)"
	}
	return r
}

// auditAnnotations waits for the audit event of the row's request and returns the annotations
// of its module.
func (bp *bothPaths) auditAnnotations(t *testing.T, row, module, resource string) map[string]string {
	t.Helper()
	e := bp.auditEvent(t, "the create of "+row, func(e auditEvent) bool {
		return e.Verb == "create" && e.ObjectRef.Resource == resource && slices.Equal(e.ImpersonatedUser.Extra[exampleKey], []string{row})
	})
	var out map[string]string
	for k, v := range e.Annotations {
		if strings.HasPrefix(k, module+"/") {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// auditEvent is what the test reads of an audit event.
type auditEvent struct {
	Stage            string `json:"stage"`
	Verb             string `json:"verb"`
	ImpersonatedUser struct {
		Username string              `json:"username"`
		Extra    map[string][]string `json:"extra"`
	} `json:"impersonatedUser"`
	ObjectRef struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
	} `json:"objectRef"`
	Annotations map[string]string `json:"annotations"`
}

// auditEvent waits for the last ResponseComplete event that matches.
func (bp *bothPaths) auditEvent(t *testing.T, what string, match func(auditEvent) bool) auditEvent {
	t.Helper()
	var found *auditEvent
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		data, err := os.ReadFile(bp.auditLog)
		if err != nil {
			return false, nil
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e auditEvent
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Stage == "ResponseComplete" && match(e) {
				found = &e
			}
		}
		return found != nil, nil
	})
	if err != nil {
		t.Fatalf("no audit event for %s in %s: %v", what, bp.auditLog, err)
	}
	return *found
}

// warningList collects the warnings of a client's responses.
type warningList struct {
	mu   sync.Mutex
	list []string
}

func (w *warningList) HandleWarningHeader(code int, _ string, text string) {
	if code != 299 || text == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warningList) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.list)
}
