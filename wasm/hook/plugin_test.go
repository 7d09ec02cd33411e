package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	core "k8s.io/kubernetes/pkg/apis/core"
	coreinstall "k8s.io/kubernetes/pkg/apis/core/install"

	"github.com/wasmkube/wasmkube/wasm"
)

// The plugin is tested as the API server uses it: completed by the initializers (a fake
// clientset and a started informer factory), called with attributes that hold internal objects
// (core.ConfigMap) and object interfaces of a scheme with the internal and v1 core types and
// their conversions, as the API server's.

var pluginScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	coreinstall.Install(s)
	return s
}()

var pluginObjects = admission.NewObjectInterfacesFromScheme(pluginScheme)

// syncBuffer is the plugin's log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newPlugin builds the plugin for modules and completes it as the API server's initializers
// do; namespaces exist in the fake cluster (for namespace selectors).
func newPlugin(t testing.TB, namespaces []*corev1.Namespace, modules ...AdmissionModule) (*Admission, *syncBuffer) {
	t.Helper()
	return newPluginWith(t, nil, namespaces, modules...)
}

// newPluginWith is newPlugin with more initializers (init, when not nil).
func newPluginWith(t testing.TB, init func(*Admission), namespaces []*corev1.Namespace, modules ...AdmissionModule) (*Admission, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	a, err := NewAdmission(modules, slog.New(slog.NewTextHandler(log, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	completePlugin(t, a, init, namespaces)
	return a, log
}

// completePlugin runs the initializers on a, as the API server does.
func completePlugin(t testing.TB, a *Admission, init func(*Admission), namespaces []*corev1.Namespace) {
	t.Helper()
	if err := a.ValidateInitialization(); err == nil {
		t.Error("the plugin says it is initialized before the initializers ran")
	}
	var objects []runtime.Object
	for _, ns := range namespaces {
		objects = append(objects, ns)
	}
	client := fake.NewClientset(objects...)
	factory := informers.NewSharedInformerFactory(client, 0)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); factory.Shutdown() })
	a.SetExternalKubeClientSet(client)
	a.SetExternalKubeInformerFactory(factory)
	a.SetDrainedNotification(stop)
	a.SetAPIServerID("test")
	if init != nil {
		init(a)
	}
	if err := a.ValidateInitialization(); err != nil {
		t.Fatal(err)
	}
	factory.Start(stop)
	for informer, ok := range factory.WaitForCacheSync(stop) {
		if !ok {
			t.Fatalf("informer %v did not sync", informer)
		}
	}
}

func testNamespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// configMap is a ConfigMap as the API server hands it to admission: the internal type.
func internalConfigMap(ns, name string, labels, data map[string]string) *core.ConfigMap {
	return &core.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Data: data}
}

// recordingAttributes records the audit annotations the plugin adds.
type recordingAttributes struct {
	admission.Attributes
	mu          sync.Mutex
	annotations map[string]string
}

func (r *recordingAttributes) AddAnnotation(key, value string) error {
	if err := r.Attributes.AddAnnotation(key, value); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.annotations == nil {
		r.annotations = map[string]string{}
	}
	r.annotations[key] = value
	return nil
}

func (r *recordingAttributes) recorded() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.annotations)
}

// object is the request's object after admission.
func (r *recordingAttributes) object(t *testing.T) *core.ConfigMap {
	t.Helper()
	cm, ok := r.GetObject().(*core.ConfigMap)
	if !ok {
		t.Fatalf("the object is a %T", r.GetObject())
	}
	return cm
}

// cmRequest describes one request on a ConfigMap (or on resource, when set).
type cmRequest struct {
	op          admission.Operation
	obj, old    *core.ConfigMap
	ns, name    string
	resource    schema.GroupVersionResource // default: configmaps
	kind        schema.GroupVersionKind     // default: ConfigMap
	subresource string
	dryRun      bool
}

var configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

func (r cmRequest) attributes() *recordingAttributes {
	resource := r.resource
	if resource.Empty() {
		resource = configMaps
	}
	kind := r.kind
	if kind.Empty() {
		kind = schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}
	}
	var opts runtime.Object
	switch r.op {
	case admission.Create:
		opts = &metav1.CreateOptions{}
	case admission.Update:
		opts = &metav1.UpdateOptions{}
	case admission.Delete:
		opts = &metav1.DeleteOptions{}
	}
	var obj, old runtime.Object
	if r.obj != nil {
		obj = r.obj
	}
	if r.old != nil {
		old = r.old
	}
	userInfo := &user.DefaultInfo{Name: "alice", UID: "u-1", Groups: []string{"dev"}}
	return &recordingAttributes{Attributes: admission.NewAttributesRecord(obj, old, kind, r.ns, r.name, resource, r.subresource, r.op, opts, r.dryRun, userInfo)}
}

func createCM(ns, name string, labels, data map[string]string) cmRequest {
	return cmRequest{op: admission.Create, obj: internalConfigMap(ns, name, labels, data), ns: ns, name: name}
}

func updateCM(ns, name string, labels, data map[string]string) cmRequest {
	old := internalConfigMap(ns, name, labels, map[string]string{"old": "yes"})
	return cmRequest{op: admission.Update, obj: internalConfigMap(ns, name, labels, data), old: old, ns: ns, name: name}
}

func deleteCM(ns, name string, labels map[string]string) cmRequest {
	return cmRequest{op: admission.Delete, old: internalConfigMap(ns, name, labels, nil), ns: ns, name: name}
}

// configMapRules selects ConfigMaps for the operations ops.
func configMapRules(ops ...admissionregistrationv1.OperationType) []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{{
		Operations: ops,
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
	}}
}

var (
	createOnly = configMapRules(admissionregistrationv1.Create)
	allOps     = configMapRules(admissionregistrationv1.OperationAll)
)

// runPhase sends the request through the phase of m: Admit for a mutating module, else Validate.
func runPhase(ctx context.Context, a *Admission, mutating bool, attr admission.Attributes) error {
	if mutating {
		return a.Admit(ctx, attr, pluginObjects)
	}
	return a.Validate(ctx, attr, pluginObjects)
}

// reviewed is the object (or old object, when old) the module saw, as a v1 ConfigMap.
func reviewedConfigMap(t *testing.T, review *admissionv1.AdmissionReview, old bool) *corev1.ConfigMap {
	t.Helper()
	raw := review.Request.Object
	if old {
		raw = review.Request.OldObject
	}
	if raw.Object == nil {
		return nil
	}
	cm, ok := raw.Object.(*corev1.ConfigMap)
	if !ok {
		t.Fatalf("the module got a %T", raw.Object)
	}
	return cm
}

// TestAdmissionPluginMatching: a module is called for the requests its rules, selectors and
// match conditions select, in both phases.
func TestAdmissionPluginMatching(t *testing.T) {
	namespaces := []*corev1.Namespace{testNamespace("a", map[string]string{"team": "a"}), testNamespace("b", map[string]string{"team": "b"})}
	teamA := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	web := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	webLabels, dbLabels := map[string]string{"app": "web"}, map[string]string{"app": "db"}
	keep := []admissionregistrationv1.MatchCondition{{Name: "keep", Expression: `object.metadata.name == "keep"`}}
	webhookConfigurations := schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}
	webhookConfiguration := schema.GroupVersionKind{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingWebhookConfiguration"}
	everything := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.OperationAll},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{"*"}, APIVersions: []string{"*"}, Resources: []string{"*"}},
	}}

	cases := []struct {
		name   string
		module AdmissionModule
		req    cmRequest
		called bool
		code   int32 // the plugin's error, 0: none
	}{
		{name: "no rules", module: AdmissionModule{}, req: createCM("a", "x", nil, nil)},
		{name: "CREATE rule, CREATE", module: AdmissionModule{Rules: createOnly}, req: createCM("a", "x", nil, nil), called: true},
		{name: "CREATE rule, UPDATE", module: AdmissionModule{Rules: createOnly}, req: updateCM("a", "x", nil, nil)},
		{name: "CREATE rule, DELETE", module: AdmissionModule{Rules: createOnly}, req: deleteCM("a", "x", nil)},
		{name: "UPDATE rule, UPDATE", module: AdmissionModule{Rules: configMapRules(admissionregistrationv1.Update)}, req: updateCM("a", "x", nil, nil), called: true},
		{name: "UPDATE rule, CREATE", module: AdmissionModule{Rules: configMapRules(admissionregistrationv1.Update)}, req: createCM("a", "x", nil, nil)},
		{name: "* rule, DELETE", module: AdmissionModule{Rules: allOps}, req: deleteCM("a", "x", nil), called: true},
		{name: "rule for secrets", module: AdmissionModule{Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.OperationAll},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"}},
		}}}, req: createCM("a", "x", nil, nil)},
		{name: "rule for another group", module: AdmissionModule{Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.OperationAll},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"*"}, Resources: []string{"*"}},
		}}}, req: createCM("a", "x", nil, nil)},
		{name: "subresource not in the rule", module: AdmissionModule{Rules: allOps},
			req: cmRequest{op: admission.Update, obj: internalConfigMap("a", "x", nil, nil), old: internalConfigMap("a", "x", nil, nil), ns: "a", name: "x", subresource: "status"}},
		{name: "namespace selector matches", module: AdmissionModule{Rules: allOps, NamespaceSelector: teamA}, req: createCM("a", "x", nil, nil), called: true},
		{name: "namespace selector does not match", module: AdmissionModule{Rules: allOps, NamespaceSelector: teamA}, req: createCM("b", "x", nil, nil)},
		{name: "namespace selector, no such namespace: 404 as for webhooks", module: AdmissionModule{Rules: allOps, NamespaceSelector: teamA}, req: createCM("c", "x", nil, nil), code: 404},
		{name: "namespace selector, rule does not match, no such namespace", module: AdmissionModule{Rules: createOnly, NamespaceSelector: teamA}, req: deleteCM("c", "x", nil)},
		{name: "object selector matches", module: AdmissionModule{Rules: allOps, ObjectSelector: web}, req: createCM("a", "x", webLabels, nil), called: true},
		{name: "object selector does not match", module: AdmissionModule{Rules: allOps, ObjectSelector: web}, req: createCM("a", "x", dbLabels, nil)},
		{name: "object selector, no labels", module: AdmissionModule{Rules: allOps, ObjectSelector: web}, req: createCM("a", "x", nil, nil)},
		{name: "object selector matches the old object of a DELETE", module: AdmissionModule{Rules: allOps, ObjectSelector: web}, req: deleteCM("a", "x", webLabels), called: true},
		{name: "both selectors match", module: AdmissionModule{Rules: allOps, NamespaceSelector: teamA, ObjectSelector: web}, req: createCM("a", "x", webLabels, nil), called: true},
		{name: "namespace matches, object does not", module: AdmissionModule{Rules: allOps, NamespaceSelector: teamA, ObjectSelector: web}, req: createCM("a", "x", dbLabels, nil)},
		{name: "match condition true", module: AdmissionModule{Rules: allOps, MatchConditions: keep}, req: createCM("a", "keep", nil, nil), called: true},
		{name: "match condition false", module: AdmissionModule{Rules: allOps, MatchConditions: keep}, req: createCM("a", "drop", nil, nil)},
		{name: "webhook configurations are never sent", module: AdmissionModule{Rules: everything},
			req: cmRequest{op: admission.Delete, name: "w", resource: webhookConfigurations, kind: webhookConfiguration}},
		{name: "everything, a ConfigMap", module: AdmissionModule{Rules: everything}, req: createCM("a", "x", nil, nil), called: true},
	}
	for _, c := range cases {
		for _, mutating := range []bool{true, false} {
			name := c.name + "/validating"
			if mutating {
				name = c.name + "/mutating"
			}
			t.Run(name, func(t *testing.T) {
				f := &fakeAdmitter{name: "m"}
				m := c.module
				m.Admitter, m.Mutating = f, mutating
				a, _ := newPlugin(t, namespaces, m)
				err := runPhase(context.Background(), a, mutating, c.req.attributes())
				if c.code == 0 && err != nil {
					t.Fatalf("error: %v", err)
				}
				if c.code != 0 {
					if status := (apierrors.APIStatus)(nil); !errors.As(err, &status) || status.Status().Code != c.code {
						t.Fatalf("error %v, want code %d", err, c.code)
					}
				}
				if got := f.calls() > 0; got != c.called {
					t.Errorf("called: %v, want %v", got, c.called)
				}
			})
		}
	}
}

// TestAdmissionPluginExcludedResources: virtual resources the API server excludes from
// admission webhooks (TokenReviews…) are not sent to modules either, once the initializers
// handed in the feature gates and the excluded resources.
func TestAdmissionPluginExcludedResources(t *testing.T) {
	everything := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.OperationAll},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{"*"}, APIVersions: []string{"*"}, Resources: []string{"*"}},
	}}
	tokenReviews := schema.GroupVersionResource{Group: "authentication.k8s.io", Version: "v1", Resource: "tokenreviews"}
	req := cmRequest{op: admission.Create, name: "", resource: tokenReviews, kind: schema.GroupVersionKind{Group: "authentication.k8s.io", Version: "v1", Kind: "TokenReview"}}
	for _, excluded := range []bool{false, true} {
		for _, mutating := range []bool{true, false} {
			f := &fakeAdmitter{name: "m"}
			var init func(*Admission)
			if excluded {
				init = func(a *Admission) {
					a.InspectFeatureGates(utilfeature.DefaultFeatureGate)
					a.SetExcludedAdmissionResources([]schema.GroupResource{tokenReviews.GroupResource()})
				}
			}
			a, _ := newPluginWith(t, init, nil, AdmissionModule{Admitter: f, Mutating: mutating, Rules: everything})
			if err := runPhase(context.Background(), a, mutating, req.attributes()); err != nil {
				t.Fatal(err)
			}
			if called := f.calls() > 0; called == excluded {
				t.Errorf("excluded %v, mutating %v: called %v", excluded, mutating, called)
			}
		}
	}
}

// TestAdmissionPluginReview: what a module gets is the AdmissionReview a webhook would get.
func TestAdmissionPluginReview(t *testing.T) {
	f := &fakeAdmitter{name: "m"}
	a, _ := newPlugin(t, nil, AdmissionModule{Admitter: f, Rules: allOps})
	req := updateCM("a", "x", map[string]string{"app": "web"}, map[string]string{"new": "yes"})
	if err := a.Validate(context.Background(), req.attributes(), pluginObjects); err != nil {
		t.Fatal(err)
	}
	r := f.last(t).Request
	if r.UID == "" || r.Operation != admissionv1.Update || r.Namespace != "a" || r.Name != "x" ||
		r.Kind != (metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}) ||
		r.Resource != (metav1.GroupVersionResource{Version: "v1", Resource: "configmaps"}) ||
		r.UserInfo.Username != "alice" || r.UserInfo.UID != "u-1" || !slices.Equal(r.UserInfo.Groups, []string{"dev"}) ||
		r.DryRun == nil || *r.DryRun {
		t.Errorf("request %+v", r)
	}
	if _, ok := r.Options.Object.(*metav1.UpdateOptions); !ok {
		t.Errorf("options %T", r.Options.Object)
	}
	if obj := reviewedConfigMap(t, f.last(t), false); obj == nil || obj.Data["new"] != "yes" || obj.Labels["app"] != "web" {
		t.Errorf("object %+v", obj)
	}
	if old := reviewedConfigMap(t, f.last(t), true); old == nil || old.Data["old"] != "yes" {
		t.Errorf("old object %+v", old)
	}
	if f.mutating[0] {
		t.Error("a validating module was called as mutating")
	}
}

// TestAdmissionPluginPhases: mutating modules run in Admit only, validating modules in
// Validate only, each in order; a mutating module sees the changes of the ones before it, and
// validating modules see them all.
func TestAdmissionPluginPhases(t *testing.T) {
	first := &fakeAdmitter{name: "first", res: jsonPatch(`[{"op":"add","path":"/data/first","value":"1"}]`)}
	var secondSaw map[string]string
	second := &fakeAdmitter{name: "second", answer: func(review *admissionv1.AdmissionReview) (*admissionv1.AdmissionResponse, error) {
		secondSaw = maps.Clone(review.Request.Object.Object.(*corev1.ConfigMap).Data)
		res := jsonPatch(`[{"op":"add","path":"/data/second","value":"2"}]`)
		res.UID = review.Request.UID
		return res, nil
	}}
	check := &fakeAdmitter{name: "check"}
	later := &fakeAdmitter{name: "later"}
	a, _ := newPlugin(t, nil,
		AdmissionModule{Admitter: check, Rules: allOps},
		AdmissionModule{Admitter: first, Mutating: true, Rules: allOps},
		AdmissionModule{Admitter: later, Rules: allOps},
		AdmissionModule{Admitter: second, Mutating: true, Rules: allOps},
	)
	attr := createCM("a", "x", nil, map[string]string{"orig": "0"}).attributes()
	if err := a.Admit(context.Background(), attr, pluginObjects); err != nil {
		t.Fatal(err)
	}
	if first.calls() != 1 || second.calls() != 1 || check.calls() != 0 || later.calls() != 0 {
		t.Fatalf("Admit called first %d, second %d, check %d, later %d times", first.calls(), second.calls(), check.calls(), later.calls())
	}
	if !first.mutating[0] || !second.mutating[0] {
		t.Error("a mutating module was called as validating")
	}
	if want := map[string]string{"orig": "0", "first": "1"}; !maps.Equal(secondSaw, want) {
		t.Errorf("the second module saw %v, want %v", secondSaw, want)
	}
	want := map[string]string{"orig": "0", "first": "1", "second": "2"}
	if got := attr.object(t).Data; !maps.Equal(got, want) {
		t.Errorf("after Admit the object holds %v, want %v", got, want)
	}
	if err := a.Validate(context.Background(), attr, pluginObjects); err != nil {
		t.Fatal(err)
	}
	if first.calls() != 1 || second.calls() != 1 || check.calls() != 1 || later.calls() != 1 {
		t.Fatalf("Validate called first %d, second %d, check %d, later %d times", first.calls(), second.calls(), check.calls(), later.calls())
	}
	if check.mutating[0] || later.mutating[0] {
		t.Error("a validating module was called as mutating")
	}
	if got := reviewedConfigMap(t, check.last(t), false).Data; !maps.Equal(got, want) {
		t.Errorf("the validating module saw %v, want %v", got, want)
	}
}

// TestAdmissionPluginEncodesObjectsOnce: the modules of a phase get the JSON of an unchanged
// object encoded once (the same bytes), and a module after a patch gets the patched object's.
func TestAdmissionPluginEncodesObjectsOnce(t *testing.T) {
	type seen struct{ object, oldObject []byte }
	record := func(name string, into *[]seen, res *admissionv1.AdmissionResponse) *fakeAdmitter {
		return &fakeAdmitter{name: name, answer: func(review *admissionv1.AdmissionReview) (*admissionv1.AdmissionResponse, error) {
			*into = append(*into, seen{review.Request.Object.Raw, review.Request.OldObject.Raw})
			out := &admissionv1.AdmissionResponse{Allowed: true}
			if res != nil {
				out = res.DeepCopy()
			}
			out.UID = review.Request.UID
			return out, nil
		}}
	}
	var mutated, validated []seen
	a, _ := newPlugin(t, nil,
		AdmissionModule{Admitter: record("first", &mutated, jsonPatch(`[{"op":"add","path":"/data/first","value":"1"}]`)), Mutating: true, Rules: allOps},
		AdmissionModule{Admitter: record("second", &mutated, nil), Mutating: true, Rules: allOps},
		AdmissionModule{Admitter: record("check", &validated, nil), Rules: allOps},
		AdmissionModule{Admitter: record("later", &validated, nil), Rules: allOps},
	)
	attr := updateCM("a", "x", nil, map[string]string{"orig": "0"}).attributes()
	if err := a.Admit(context.Background(), attr, pluginObjects); err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(context.Background(), attr, pluginObjects); err != nil {
		t.Fatal(err)
	}
	if len(mutated) != 2 || len(validated) != 2 {
		t.Fatalf("calls: %d mutating, %d validating", len(mutated), len(validated))
	}
	data := func(raw []byte) map[string]string {
		var cm corev1.ConfigMap
		if err := json.Unmarshal(raw, &cm); err != nil {
			t.Fatalf("object JSON %s: %v", raw, err)
		}
		return cm.Data
	}
	if got := data(mutated[0].object); !maps.Equal(got, map[string]string{"orig": "0"}) {
		t.Errorf("first module got %v", got)
	}
	if got, want := data(mutated[1].object), map[string]string{"orig": "0", "first": "1"}; !maps.Equal(got, want) {
		t.Errorf("the module after a patch got %v, want %v", got, want)
	}
	if &mutated[0].oldObject[0] != &mutated[1].oldObject[0] {
		t.Error("the old object was encoded once per module")
	}
	if got, want := data(validated[0].object), map[string]string{"orig": "0", "first": "1"}; !maps.Equal(got, want) {
		t.Errorf("validating module got %v, want %v", got, want)
	}
	if &validated[0].object[0] != &validated[1].object[0] || &validated[0].oldObject[0] != &validated[1].oldObject[0] {
		t.Error("validating modules got objects encoded once per module")
	}
	if got := data(validated[1].oldObject); !maps.Equal(got, map[string]string{"old": "yes"}) {
		t.Errorf("old object %v", got)
	}
}

// TestAdmissionPluginSelectorsSeeChanges: selectors of a later mutating module are matched
// against the object as the modules before it left it.
func TestAdmissionPluginSelectorsSeeChanges(t *testing.T) {
	labeler := &fakeAdmitter{name: "labeler", res: jsonPatch(`[{"op":"add","path":"/metadata/labels","value":{"app":"web"}}]`)}
	web := &fakeAdmitter{name: "web"}
	a, _ := newPlugin(t, nil,
		AdmissionModule{Admitter: labeler, Mutating: true, Rules: allOps},
		AdmissionModule{Admitter: web, Mutating: true, Rules: allOps, ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}})
	attr := createCM("ns", "x", nil, nil).attributes()
	if err := a.Admit(context.Background(), attr, pluginObjects); err != nil {
		t.Fatal(err)
	}
	if web.calls() != 1 {
		t.Errorf("the module selecting app=web was called %d times after another labeled the object", web.calls())
	}
}

// TestAdmissionPluginStopsAtDenial: the first denial ends the phase.
func TestAdmissionPluginStopsAtDenial(t *testing.T) {
	for _, mutating := range []bool{true, false} {
		no := &fakeAdmitter{name: "no", res: denyWith(&metav1.Status{Code: 422, Message: "bad field"})}
		after := &fakeAdmitter{name: "after"}
		a, _ := newPlugin(t, nil,
			AdmissionModule{Admitter: no, Mutating: mutating, Rules: allOps},
			AdmissionModule{Admitter: after, Mutating: mutating, Rules: allOps})
		err := runPhase(context.Background(), a, mutating, createCM("a", "x", nil, nil).attributes())
		var status *apierrors.StatusError
		if !errors.As(err, &status) || status.ErrStatus.Code != 422 || status.ErrStatus.Reason != metav1.StatusReasonInvalid ||
			status.ErrStatus.Message != `admission WASM module "no" denied the request: bad field` {
			t.Errorf("mutating %v: error %v", mutating, err)
		}
		if after.calls() != 0 {
			t.Errorf("mutating %v: a module after a denial was called", mutating)
		}
	}
}

// TestAdmissionPluginPatches: JSON patches and Full patches change the request's object; a
// patch that does not apply is a failure of the module, decided by its failure policy.
func TestAdmissionPluginPatches(t *testing.T) {
	orig := map[string]string{"a": "1"}
	cases := []struct {
		name    string
		module  AdmissionModule
		res     *admissionv1.AdmissionResponse
		req     cmRequest // default: createCM("ns", "x", nil, orig)
		code    int32     // the plugin's error, 0: none
		message string    // in the error
		data    map[string]string
		labels  map[string]string
		annots  map[string]string
	}{
		{name: "JSONPatch adds", res: jsonPatch(`[{"op":"add","path":"/data/b","value":"2"}]`), data: map[string]string{"a": "1", "b": "2"}},
		{name: "JSONPatch adds a label", res: jsonPatch(`[{"op":"add","path":"/metadata/labels","value":{"team":"x"}}]`), data: orig, labels: map[string]string{"team": "x"}},
		{name: "JSONPatch replaces", res: jsonPatch(`[{"op":"replace","path":"/data/a","value":"9"}]`), data: map[string]string{"a": "9"}},
		{name: "JSONPatch removes", res: jsonPatch(`[{"op":"remove","path":"/data/a"}]`), data: map[string]string{}},
		{name: "JSONPatch moves", res: jsonPatch(`[{"op":"move","from":"/data/a","path":"/data/z"}]`), data: map[string]string{"z": "1"}},
		{name: "JSONPatch test passes", res: jsonPatch(`[{"op":"test","path":"/data/a","value":"1"},{"op":"add","path":"/data/b","value":"2"}]`), data: map[string]string{"a": "1", "b": "2"}},
		{name: "JSONPatch no change", res: jsonPatch(`[{"op":"replace","path":"/data/a","value":"1"}]`), data: orig},
		{name: "JSONPatch on UPDATE", res: jsonPatch(`[{"op":"add","path":"/data/b","value":"2"}]`),
			req: updateCM("ns", "x", nil, orig), data: map[string]string{"a": "1", "b": "2"}},
		{name: "Full patch", res: fullPatch(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"ns","labels":{"full":"yes"}},"data":{"c":"3"}}`),
			data: map[string]string{"c": "3"}, labels: map[string]string{"full": "yes"}},
		{name: "Full patch without apiVersion and kind", res: fullPatch(`{"metadata":{"name":"x","namespace":"ns"},"data":{"c":"3"}}`),
			data: map[string]string{"c": "3"}},
		{name: "Full patch, no change", res: fullPatch(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"ns"},"data":{"a":"1"}}`), data: orig},

		{name: "JSONPatch does not apply", res: jsonPatch(`[{"op":"remove","path":"/data/missing"}]`),
			code: 500, message: `Internal error occurred: admission WASM module "m" failed: apply JSON patch: `, data: orig},
		{name: "JSONPatch test fails", res: jsonPatch(`[{"op":"test","path":"/data/a","value":"2"},{"op":"add","path":"/data/b","value":"2"}]`),
			code: 500, message: "apply JSON patch: ", data: orig},
		{name: "JSONPatch replaces the object with null", res: jsonPatch(`[{"op":"replace","path":"","value":null}]`),
			code: 500, message: `admission WASM module "m" failed: `, data: orig},
		{name: "JSONPatch changes the kind", res: jsonPatch(`[{"op":"replace","path":"/kind","value":"Secret"}]`),
			code: 500, message: `admission WASM module "m" failed: the patched object `, data: orig},
		{name: "JSONPatch breaks the type", res: jsonPatch(`[{"op":"replace","path":"/data","value":5}]`),
			code: 500, message: "does not decode as /v1, Kind=ConfigMap", data: orig},
		{name: "Full patch of another kind", res: fullPatch(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}`),
			code: 500, message: "the patched object is a /v1, Kind=Secret, not a /v1, Kind=ConfigMap", data: orig},
		{name: "Full patch breaks the type", res: fullPatch(`{"data":{"a":1}}`),
			code: 500, message: "does not decode", data: orig},
		{name: "JSONPatch does not apply, Ignore", module: AdmissionModule{FailurePolicy: admissionregistrationv1.Ignore}, res: jsonPatch(`[{"op":"remove","path":"/data/missing"}]`),
			data: orig, annots: map[string]string{"m/failed-open": "apply JSON patch: "}},
		{name: "Full patch of another kind, Ignore", module: AdmissionModule{FailurePolicy: admissionregistrationv1.Ignore}, res: fullPatch(`{"apiVersion":"v1","kind":"Secret"}`),
			data: orig, annots: map[string]string{"m/failed-open": "the patched object is a /v1, Kind=Secret"}},
		{name: "JSONPatch does not apply, monitor", module: AdmissionModule{Monitor: true}, res: jsonPatch(`[{"op":"remove","path":"/data/missing"}]`),
			data: orig, annots: map[string]string{"m/monitor": "would mutate"}},
		{name: "JSONPatch, monitor", module: AdmissionModule{Monitor: true}, res: jsonPatch(`[{"op":"add","path":"/data/b","value":"2"}]`),
			data: orig, annots: map[string]string{"m/monitor": "would mutate"}},
		{name: "patch with a denial", res: &admissionv1.AdmissionResponse{Result: &metav1.Status{Message: "no"}, Patch: []byte(`[{"op":"add","path":"/data/b","value":"2"}]`), PatchType: patchType(admissionv1.PatchTypeJSONPatch)},
			code: 403, message: `admission WASM module "m" denied the request: no`, data: orig},
		{name: "patch of a DELETE", res: jsonPatch(`[{"op":"add","path":"/data/b","value":"2"}]`), req: deleteCM("ns", "x", nil),
			code: 500, message: "the module patched the object, but DELETE requests have none"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.module
			m.Admitter, m.Mutating, m.Rules = &fakeAdmitter{name: "m", res: c.res}, true, allOps
			a, _ := newPlugin(t, nil, m)
			req := c.req
			if req.op == "" {
				req = createCM("ns", "x", nil, orig)
			}
			attr := req.attributes()
			err := a.Admit(context.Background(), attr, pluginObjects)
			switch {
			case c.code == 0 && err != nil:
				t.Fatalf("error: %v", err)
			case c.code != 0:
				var status *apierrors.StatusError
				if !errors.As(err, &status) || status.ErrStatus.Code != c.code || !strings.Contains(status.ErrStatus.Message, c.message) {
					t.Fatalf("error %v, want %d with %q", err, c.code, c.message)
				}
			}
			if req.op != admission.Delete {
				cm := attr.object(t)
				if !maps.Equal(cm.Data, c.data) || !maps.Equal(cm.Labels, c.labels) {
					t.Errorf("object holds data %v labels %v, want %v %v", cm.Data, cm.Labels, c.data, c.labels)
				}
				if cm.Name != "x" || cm.Namespace != "ns" {
					t.Errorf("object is %s/%s", cm.Namespace, cm.Name)
				}
			}
			got := attr.recorded()
			if len(got) != len(c.annots) {
				t.Errorf("audit annotations %v, want %v", got, c.annots)
			}
			for k, prefix := range c.annots {
				if !strings.HasPrefix(got[k], prefix) {
					t.Errorf("audit annotation %s=%q, want it to start with %q", k, got[k], prefix)
				}
			}
		})
	}
}

// TestAdmissionPluginValidatingPatch: a validating module cannot change the object, even if
// its Admitter answers with a patch: that answer is invalid, and its failure policy decides.
func TestAdmissionPluginValidatingPatch(t *testing.T) {
	for _, policy := range []admissionregistrationv1.FailurePolicyType{admissionregistrationv1.Fail, admissionregistrationv1.Ignore} {
		f := &fakeAdmitter{name: "m", res: jsonPatch(`[{"op":"add","path":"/data/b","value":"2"}]`)}
		a, _ := newPlugin(t, nil, AdmissionModule{Admitter: f, Rules: allOps, FailurePolicy: policy})
		attr := createCM("ns", "x", nil, map[string]string{"a": "1"}).attributes()
		err := a.Validate(context.Background(), attr, pluginObjects)
		if got := attr.object(t).Data; !maps.Equal(got, map[string]string{"a": "1"}) {
			t.Errorf("%s: a validating module changed the object: %v (error %v)", policy, got, err)
		}
		if want := policy == admissionregistrationv1.Fail; (err != nil) != want || (want && !apierrors.IsInternalError(err)) {
			t.Errorf("%s: error %v", policy, err)
		}
	}
}

// TestAdmissionPluginDryRun: dry-run requests reach modules, with dryRun true.
func TestAdmissionPluginDryRun(t *testing.T) {
	for _, dryRun := range []bool{false, true} {
		mut, val := &fakeAdmitter{name: "mut"}, &fakeAdmitter{name: "val"}
		a, _ := newPlugin(t, nil, AdmissionModule{Admitter: mut, Mutating: true, Rules: allOps}, AdmissionModule{Admitter: val, Rules: allOps})
		req := createCM("ns", "x", nil, nil)
		req.dryRun = dryRun
		attr := req.attributes()
		if err := a.Admit(context.Background(), attr, pluginObjects); err != nil {
			t.Fatal(err)
		}
		if err := a.Validate(context.Background(), attr, pluginObjects); err != nil {
			t.Fatal(err)
		}
		for _, f := range []*fakeAdmitter{mut, val} {
			if r := f.last(t).Request; r.DryRun == nil || *r.DryRun != dryRun {
				t.Errorf("dryRun %v: module %s got dryRun %v", dryRun, f.name, r.DryRun)
			}
		}
	}
}

// warnings records the warnings of a request.
type warningRecorder struct {
	mu   sync.Mutex
	text []string
}

func (w *warningRecorder) AddWarning(agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.text = append(w.text, text)
}

func (w *warningRecorder) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.text)
}

// TestAdmissionPluginWarnings: a module's warnings reach the client, from either phase and
// with a denial too; a module in monitor mode sends none.
func TestAdmissionPluginWarnings(t *testing.T) {
	cases := []struct {
		name   string
		module AdmissionModule
		res    *admissionv1.AdmissionResponse
		want   []string
	}{
		{"mutating", AdmissionModule{Mutating: true}, &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{"one", "two"}}, []string{"one", "two"}},
		{"validating", AdmissionModule{}, &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{"one"}}, []string{"one"}},
		{"with a denial", AdmissionModule{}, &admissionv1.AdmissionResponse{Warnings: []string{"careful"}}, []string{"careful"}},
		{"with a patch", AdmissionModule{Mutating: true}, &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{"patched"},
			Patch: []byte(`[{"op":"add","path":"/data/b","value":"2"}]`), PatchType: patchType(admissionv1.PatchTypeJSONPatch)}, []string{"patched"}},
		{"monitor", AdmissionModule{Monitor: true}, &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{"one"}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.module
			m.Admitter, m.Rules = &fakeAdmitter{name: "m", res: c.res}, allOps
			a, _ := newPlugin(t, nil, m)
			w := &warningRecorder{}
			ctx := warning.WithWarningRecorder(context.Background(), w)
			_ = runPhase(ctx, a, m.Mutating, createCM("ns", "x", nil, map[string]string{"a": "1"}).attributes())
			if got := w.got(); !slices.Equal(got, c.want) {
				t.Errorf("warnings %q, want %q", got, c.want)
			}
		})
	}
}

// TestAdmissionPluginAuditAnnotations: a module's audit annotations are recorded on the
// request, prefixed with its name; one that cannot be recorded is logged, the request goes on.
func TestAdmissionPluginAuditAnnotations(t *testing.T) {
	f := &fakeAdmitter{name: "m", res: &admissionv1.AdmissionResponse{Allowed: true, AuditAnnotations: map[string]string{"checked": "yes", "bad key!": "v"}}}
	g := &fakeAdmitter{name: "n", res: &admissionv1.AdmissionResponse{AuditAnnotations: map[string]string{"why": "denied"}}}
	a, log := newPlugin(t, nil, AdmissionModule{Admitter: f, Mutating: true, Rules: allOps}, AdmissionModule{Admitter: g, Rules: allOps})
	attr := createCM("ns", "x", nil, nil).attributes()
	if err := a.Admit(context.Background(), attr, pluginObjects); err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(context.Background(), attr, pluginObjects); err == nil {
		t.Fatal("not denied")
	}
	if got, want := attr.recorded(), map[string]string{"m/checked": "yes", "n/why": "denied"}; !maps.Equal(got, want) {
		t.Errorf("audit annotations %v, want %v", got, want)
	}
	if !strings.Contains(log.String(), "cannot be recorded") || !strings.Contains(log.String(), "bad key!") {
		t.Errorf("the log does not say an annotation was dropped:\n%s", log)
	}
}

// TestAdmissionPluginReinvocation: when the admission chain is re-invoked, mutating modules
// are not called again (reinvocationPolicy Never); validating modules still are.
func TestAdmissionPluginReinvocation(t *testing.T) {
	mut := &fakeAdmitter{name: "mut", res: jsonPatch(`[{"op":"add","path":"/data/b","value":"2"}]`)}
	val := &fakeAdmitter{name: "val"}
	a, _ := newPlugin(t, nil, AdmissionModule{Admitter: mut, Mutating: true, Rules: allOps}, AdmissionModule{Admitter: val, Rules: allOps})
	attr := createCM("ns", "x", nil, map[string]string{"a": "1"}).attributes()
	attr.GetReinvocationContext().SetIsReinvoke()
	if err := a.Admit(context.Background(), attr, pluginObjects); err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(context.Background(), attr, pluginObjects); err != nil {
		t.Fatal(err)
	}
	if mut.calls() != 0 {
		t.Error("a mutating module was re-invoked")
	}
	if val.calls() != 1 {
		t.Errorf("the validating module was called %d times on re-invocation", val.calls())
	}
	if got := attr.object(t).Data; !maps.Equal(got, map[string]string{"a": "1"}) {
		t.Errorf("object changed on re-invocation: %v", got)
	}
}

// TestAdmissionPluginFailures: a module's failure under its failure policy, as the client
// and the log see it.
func TestAdmissionPluginFailures(t *testing.T) {
	trap := &wasm.CallError{Module: "m", Export: "validate", Kind: wasm.KindTrap, Err: errors.New("wasm error: unreachable"), Stderr: "secret-stderr"}
	timeout := &wasm.CallError{Module: "m", Export: "validate", Kind: wasm.KindTimeout, Err: context.DeadlineExceeded}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name    string
		module  AdmissionModule
		ctx     context.Context
		err     error
		code    int32
		message string
		annots  map[string]string
		log     string
	}{
		{name: "trap, Fail", err: trap, code: 500, message: `Internal error occurred: admission WASM module "m" failed: trap (details in the API server's log)`,
			log: "secret-stderr"},
		{name: "trap, Ignore", module: AdmissionModule{FailurePolicy: admissionregistrationv1.Ignore}, err: trap,
			annots: map[string]string{"m/failed-open": "trap (details in the API server's log)"}, log: "secret-stderr"},
		{name: "trap, monitor", module: AdmissionModule{Monitor: true}, err: trap,
			annots: map[string]string{"m/monitor": "failed: trap (details in the API server's log)"}, log: "secret-stderr"},
		{name: "module error, Fail", err: &wasm.CallError{Module: "m", Kind: wasm.KindModuleError, Err: errors.New("no settings")},
			code: 500, message: `Internal error occurred: admission WASM module "m" failed: the module returned an error: no settings`},
		{name: "timeout, Fail", err: timeout, ctx: canceled, code: 500, message: `admission WASM module "m" failed: timeout (details in the API server's log)`},
		{name: "timeout, Ignore, request still alive", module: AdmissionModule{FailurePolicy: admissionregistrationv1.Ignore}, err: timeout,
			annots: map[string]string{"m/failed-open": "timeout (details in the API server's log)"}},
		{name: "timeout, Ignore, request timed out", module: AdmissionModule{FailurePolicy: admissionregistrationv1.Ignore}, err: timeout, ctx: canceled,
			code: 504, message: "Timeout: request did not complete within requested timeout",
			annots: map[string]string{"m/failed-open": "timeout (details in the API server's log)"}},
	}
	for _, c := range cases {
		for _, mutating := range []bool{true, false} {
			name := c.name + "/validating"
			if mutating {
				name = c.name + "/mutating"
			}
			t.Run(name, func(t *testing.T) {
				m := c.module
				m.Admitter, m.Mutating, m.Rules = &fakeAdmitter{name: "m", err: c.err}, mutating, allOps
				a, log := newPlugin(t, nil, m)
				ctx := c.ctx
				if ctx == nil {
					ctx = context.Background()
				}
				attr := createCM("ns", "x", nil, nil).attributes()
				err := runPhase(ctx, a, mutating, attr)
				switch {
				case c.code == 0 && err != nil:
					t.Fatalf("error: %v", err)
				case c.code != 0:
					var status *apierrors.StatusError
					if !errors.As(err, &status) || status.ErrStatus.Code != c.code || !strings.Contains(status.ErrStatus.Message, c.message) {
						t.Fatalf("error %v, want %d with %q", err, c.code, c.message)
					}
					if strings.Contains(err.Error(), "secret") {
						t.Errorf("the client sees the module's stderr: %v", err)
					}
				}
				if got := attr.recorded(); !maps.Equal(got, c.annots) {
					t.Errorf("audit annotations %v, want %v", got, c.annots)
				}
				if !strings.Contains(log.String(), `module=m`) || !strings.Contains(log.String(), c.log) {
					t.Errorf("the log does not have the failure (%q):\n%s", c.log, log)
				}
			})
		}
	}
}

// TestAdmissionPluginInitialization: a plugin whose initializers did not run refuses to say it is
// initialized; completed, it handles CREATE, UPDATE, DELETE and CONNECT.
func TestAdmissionPluginInitialization(t *testing.T) {
	a, err := NewAdmission(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ValidateInitialization(); err == nil {
		t.Error("initialized without a client and informers")
	}
	a, _ = newPlugin(t, nil)
	for _, op := range []admission.Operation{admission.Create, admission.Update, admission.Delete, admission.Connect} {
		if !a.Handles(op) {
			t.Errorf("does not handle %s", op)
		}
	}
	if err := a.Admit(context.Background(), createCM("ns", "x", nil, nil).attributes(), pluginObjects); err != nil {
		t.Error(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Validate(ctx, createCM("ns", "x", nil, nil).attributes(), pluginObjects); err != nil {
		t.Error(err)
	}
}
