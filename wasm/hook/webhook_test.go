package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
)

// webhookServer serves the webhook handlers of a Live holding g.
func webhookServer(t *testing.T, g Generation) *httptest.Server {
	t.Helper()
	h := NewLive(g, nil, NewDecisionLog(10)).WebhookHandlers()
	mux := http.NewServeMux()
	mux.HandleFunc(WebhookAuthenticatePath, h.Authenticate)
	mux.HandleFunc(WebhookAuthorizePath, h.Authorize)
	mux.HandleFunc(WebhookAdmissionPath, h.Admit)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// post sends body to path and decodes a 200 answer into out; it returns the status and body.
func post(t *testing.T, srv *httptest.Server, path, body string, out any) (int, string) {
	t.Helper()
	resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(b.Bytes(), out); err != nil {
			t.Fatalf("decode %s: %v", b.String(), err)
		}
	}
	return resp.StatusCode, b.String()
}

const configMapReview = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1",
"kind":{"group":"","version":"v1","kind":"ConfigMap"},"resource":{"group":"","version":"v1","resource":"configmaps"},
"name":"c","namespace":"ns","operation":"CREATE","userInfo":{"username":"alice"},
"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"ns"},"data":{"a":"1"}}}}`

func TestWebhookAdmission(t *testing.T) {
	full := envelope.PatchTypeFull
	modules := []AdmissionModule{
		{Admitter: &fakeAdmitter{name: "deny", res: denyWith(&metav1.Status{Message: "no way"})}},
		{Admitter: &fakeAdmitter{name: "full", res: &admissionv1.AdmissionResponse{Allowed: true, PatchType: &full,
			Patch: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"ns"},"data":{"a":"1","b":"2"}}`)}}, Mutating: true},
		{Admitter: &fakeAdmitter{name: "json", res: jsonPatch(`[{"op":"add","path":"/data/c","value":"3"}]`)}, Mutating: true},
		{Admitter: &fakeAdmitter{name: "broken", err: &wasm.CallError{Module: "broken", Export: "validate", Kind: wasm.KindTimeout, Err: errors.New("slow")}}},
		{Admitter: &fakeAdmitter{name: "ignored", err: errors.New("boom")}, FailurePolicy: admissionregistrationv1.Ignore},
		{Admitter: &fakeAdmitter{name: "watch", res: denyWith(&metav1.Status{Message: "would not"})}, Monitor: true},
		{Admitter: &fakeAdmitter{name: "warn", res: &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{"careful"},
			AuditAnnotations: map[string]string{"k": "v"}}}},
	}
	srv := webhookServer(t, Generation{Admission: modules})
	cases := []struct {
		module  string
		check   func(*admissionv1.AdmissionResponse) bool
		explain string
	}{
		{"deny", func(r *admissionv1.AdmissionResponse) bool {
			return !r.Allowed && r.Result.Code == 403 && r.Result.Message == "no way"
		}, "denied with the module's own message and 403"},
		{"full", func(r *admissionv1.AdmissionResponse) bool {
			return r.Allowed && *r.PatchType == admissionv1.PatchTypeJSONPatch && string(r.Patch) == `[{"op":"add","path":"/data/b","value":"2"}]`
		}, "a Full patch sent as the JSON patch to the edited object"},
		{"json", func(r *admissionv1.AdmissionResponse) bool {
			return r.Allowed && string(r.Patch) == `[{"op":"add","path":"/data/c","value":"3"}]`
		}, "a JSON patch passed on"},
		{"broken", func(r *admissionv1.AdmissionResponse) bool {
			return !r.Allowed && r.Result.Code == 500 && strings.Contains(r.Result.Message, `"broken" failed: timeout`)
		}, "a failure under Fail rejected with 500, the kind of failure only"},
		{"ignored", func(r *admissionv1.AdmissionResponse) bool {
			return r.Allowed && r.AuditAnnotations["failed-open"] != ""
		}, "a failure under Ignore allowed, with failed-open"},
		{"watch", func(r *admissionv1.AdmissionResponse) bool {
			return r.Allowed && strings.HasPrefix(r.AuditAnnotations["monitor"], "would deny")
		}, "monitor mode allowed, the verdict in monitor"},
		{"warn", func(r *admissionv1.AdmissionResponse) bool {
			return r.Allowed && len(r.Warnings) == 1 && r.AuditAnnotations["k"] == "v" && r.Patch == nil
		}, "warnings and annotations (unprefixed) passed on"},
	}
	for _, c := range cases {
		var out admissionv1.AdmissionReview
		status, body := post(t, srv, WebhookAdmissionPath+c.module, configMapReview, &out)
		if status != http.StatusOK || out.Response == nil || out.Response.UID != "u-1" || out.APIVersion != "admission.k8s.io/v1" || !c.check(out.Response) {
			t.Errorf("%s: want %s; got %d %s", c.module, c.explain, status, body)
		}
	}
	if status, body := post(t, srv, WebhookAdmissionPath+"nosuch", configMapReview, nil); status != http.StatusNotFound || !strings.Contains(body, `"nosuch"`) {
		t.Errorf("unknown module: %d %s; want 404 naming it", status, body)
	}
	for body, want := range map[string]int{`{`: 400, `{"apiVersion":"v1","kind":"Pod"}`: 400,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`: 400} {
		if status, got := post(t, srv, WebhookAdmissionPath+"deny", body, nil); status != want {
			t.Errorf("body %s: %d %s; want %d", body, status, got, want)
		}
	}
	huge := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","x":"` + strings.Repeat("a", maxWebhookBody) + `"}`
	if status, _ := post(t, srv, WebhookAdmissionPath+"deny", huge, nil); status != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over the limit: %d, want 413", status)
	}
	if resp, err := http.Get(srv.URL + WebhookAdmissionPath + "deny"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v %v, want 405", resp.StatusCode, err)
	}
}

func TestWebhookAuthenticate(t *testing.T) {
	srv := webhookServer(t, Generation{Token: tokenFunc(func(ctx context.Context, token string) (*authenticator.Response, bool, error) {
		auds, _ := authenticator.AudiencesFrom(ctx)
		switch token {
		case "good":
			return &authenticator.Response{User: &user.DefaultInfo{Name: "alice", Groups: []string{"g"}}, Audiences: auds}, true, nil
		case "broken":
			return nil, false, errors.New("module broke on token broken")
		}
		return nil, false, nil
	})})
	for _, c := range []struct {
		version, token, want string
		authenticated        bool
	}{
		{"v1", "good", "alice", true},
		{"v1beta1", "good", "alice", true},
		{"v1", "bad", "", false},
		{"v1", "broken", "the authentication modules failed", false},
	} {
		var out authenticationv1.TokenReview
		body := `{"apiVersion":"authentication.k8s.io/` + c.version + `","kind":"TokenReview","spec":{"token":"` + c.token + `","audiences":["api"]}}`
		status, got := post(t, srv, WebhookAuthenticatePath, body, &out)
		if status != 200 || out.Status.Authenticated != c.authenticated || !strings.Contains(got, c.want) ||
			out.APIVersion != "authentication.k8s.io/"+c.version || strings.Contains(got, `"broken"`) {
			t.Errorf("%s %s: %d %s", c.version, c.token, status, got)
		}
		if c.authenticated && (len(out.Status.Audiences) != 1 || out.Status.Audiences[0] != "api") {
			t.Errorf("%s: audiences %v, want the requested [api]", c.token, out.Status.Audiences)
		}
	}
	// With no authentication modules, nobody is authenticated.
	var out authenticationv1.TokenReview
	empty := webhookServer(t, Generation{})
	if status, got := post(t, empty, WebhookAuthenticatePath, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"good"}}`, &out); status != 200 || out.Status.Authenticated {
		t.Errorf("no modules: %d %s", status, got)
	}
}

// TestWebhookAuthorizeBothVersions: magic-authz allows magic-group's configmaps; the group
// reaches the module from a v1 review ("groups") and a v1beta1 review ("group") alike, and the
// answer has the request's version. system:masters is never judged by modules.
func TestWebhookAuthorizeBothVersions(t *testing.T) {
	rt := newRuntime(t)
	srv := webhookServer(t, Generation{Authorizer: &Authorizer{Modules: []AuthzModule{{Module: load(t, rt, "magic-authz")}}}})
	for _, c := range []struct {
		version, groupsKey, groups, resource string
		allowed                              bool
	}{
		{"v1", "groups", `["magic-group"]`, "configmaps", true},
		{"v1beta1", "group", `["magic-group"]`, "configmaps", true},
		{"v1beta1", "group", `["magic-group"]`, "pods", false},
		{"v1", "groups", `["other"]`, "configmaps", false},
	} {
		body := `{"apiVersion":"authorization.k8s.io/` + c.version + `","kind":"SubjectAccessReview","spec":{"user":"magic-user","` +
			c.groupsKey + `":` + c.groups + `,"resourceAttributes":{"verb":"get","version":"v1","resource":"` + c.resource + `"}}}`
		var out authorizationv1.SubjectAccessReview
		status, got := post(t, srv, WebhookAuthorizePath, body, &out)
		if status != 200 || out.Status.Allowed != c.allowed || out.APIVersion != "authorization.k8s.io/"+c.version {
			t.Errorf("%s %s %s: %d %s; want allowed=%v", c.version, c.groups, c.resource, status, got, c.allowed)
		}
	}
}
