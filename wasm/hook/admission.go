package hook

import (
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/webhook"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/generic"
	webhookrequest "k8s.io/apiserver/pkg/admission/plugin/webhook/request"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/component-base/featuregate"

	"github.com/wasmkube/wasmkube/wasm/envelope"
)

// Admitter is what answers admission requests: a module of the envelope ABI (Envelope) or a
// Kubewarden policy (*kubewarden.Policy). It gets the AdmissionReview a webhook would get and
// answers with the AdmissionResponse a webhook would send.
type Admitter interface {
	Name() string
	Admit(ctx context.Context, review *admissionv1.AdmissionReview, mutating bool) (*admissionv1.AdmissionResponse, error)
}

// Envelope makes a module of the envelope ABI, with its settings, an Admitter.
func Envelope(m Module) Admitter { return envelopeAdmitter{m} }

type envelopeAdmitter struct{ Module }

func (e envelopeAdmitter) Admit(ctx context.Context, review *admissionv1.AdmissionReview, mutating bool) (*admissionv1.AdmissionResponse, error) {
	return envelope.Admit(ctx, e.Module.Module, e.Settings, review, mutating)
}

// AdmissionModule is an admission module with what decides when it is called and what its
// failure means. The fields mean what they mean for an admission webhook.
type AdmissionModule struct {
	Admitter
	// Mutating puts the module in the mutating phase; otherwise it validates.
	Mutating bool
	// Rules select the requests; no rules: never called.
	Rules []admissionregistrationv1.RuleWithOperations
	// FailurePolicy is Fail (the default when empty) or Ignore.
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// NamespaceSelector and ObjectSelector select by labels; nil selects everything.
	NamespaceSelector *metav1.LabelSelector
	ObjectSelector    *metav1.LabelSelector
	// MatchConditions are CEL expressions; all must be true for the module to be called.
	MatchConditions []admissionregistrationv1.MatchCondition
	// Monitor allows every request: what the module would have decided is logged and recorded
	// in the audit annotation NAME/monitor, and its patches are not applied.
	Monitor bool
	// Message, when set, replaces the module's message when it rejects a request.
	Message string
	// Timeout is how long one call may take (the module's own bound); a webhook standing in for
	// the module waits a little longer.
	Timeout time.Duration
}

// Admission is the admission plugin that runs modules: mutating modules in order in the
// mutating phase (each sees the previous one's changes), then validating modules in order in the
// validating phase.
//
// It reuses the webhook plugins' machinery: each module is described as a webhook (rules,
// selectors, match conditions, matchPolicy Equivalent), so who is called and with which
// AdmissionReview is decided exactly as for webhooks; only the call is in-process. Each phase
// has its own generic webhook with its own modules, as the API server's mutating and validating
// webhook plugins do; the API server's initializers reach both.
//
// # Notes
//
//   - Requests webhooks never see are not sent to modules either: TokenReviews and other
//     virtual resources, and webhook and policy configurations.
//   - What a module's answer or failure means is DecideAdmission's: failure policies, monitor
//     mode, denials, patches, warnings, audit annotations.
//   - Mutating modules are not re-invoked when later plugins change the object
//     (reinvocationPolicy Never).
//   - Modules have no side effects, so dry-run requests are sent to them like any other, with
//     dryRun: true.
type Admission struct {
	*admission.Handler
	mutating, validating *phase
	live                 *Live
	logger               *slog.Logger
	kube                 *KubernetesHost
}

// phase is the webhook machinery of one admission phase.
type phase struct {
	*generic.Webhook
	mutating bool
}

var (
	_ admission.MutationInterface   = (*Admission)(nil)
	_ admission.ValidationInterface = (*Admission)(nil)
)

// NewAdmission builds the plugin for a fixed list of modules (NewLiveAdmission with a Live
// holding them).
func NewAdmission(modules []AdmissionModule, logger *slog.Logger, kube *KubernetesHost) (*Admission, error) {
	return NewLiveAdmission(NewLive(Generation{Admission: modules}, logger, nil), logger, kube)
}

// NewLiveAdmission builds the plugin that runs the admission modules of live's current
// generation: a request is decided by the generation current when its phase begins. The API
// server's plugin initializers complete it (namespace lister, clients, authorizer, drained
// notification) before its first use, and connect kube, when given, the host of the Kubernetes
// policies among the modules.
func NewLiveAdmission(live *Live, logger *slog.Logger, kube *KubernetesHost) (*Admission, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if kube == nil {
		kube = NewKubernetesHost()
	}
	a := &Admission{
		Handler: admission.NewHandler(admission.Create, admission.Update, admission.Delete, admission.Connect),
		live:    live, logger: logger, kube: kube,
	}
	var err error
	if a.mutating, err = a.newPhase(true); err != nil {
		return nil, err
	}
	if a.validating, err = a.newPhase(false); err != nil {
		return nil, err
	}
	return a, nil
}

// newPhase builds the webhook machinery that calls the modules of one phase, in order.
func (a *Admission) newPhase(mutating bool) (*phase, error) {
	p := &phase{mutating: mutating}
	source := func(informers.SharedInformerFactory, sets.Set[schema.GroupResource]) generic.Source {
		return generationSource{}
	}
	dispatcher := func(*webhookutil.ClientManager) generic.Dispatcher { return &dispatcher{a: a, p: p} }
	var err error
	handler := admission.NewHandler(admission.Create, admission.Update, admission.Delete, admission.Connect)
	if p.Webhook, err = generic.NewWebhook(handler, nil, source, dispatcher); err != nil {
		return nil, fmt.Errorf("admission plugin: %w", err)
	}
	return p, nil
}

// Admit runs the mutating modules.
func (a *Admission) Admit(ctx context.Context, attr admission.Attributes, o admission.ObjectInterfaces) error {
	return a.mutating.Dispatch(ctx, attr, o)
}

// Validate runs the validating modules.
func (a *Admission) Validate(ctx context.Context, attr admission.Attributes, o admission.ObjectInterfaces) error {
	return a.validating.Dispatch(ctx, attr, o)
}

// Factory returns an admission.Factory that hands out a (the API server asks once). The
// plugin's own configuration, if any, has been read before: the reader is ignored.
func (a *Admission) Factory() admission.Factory {
	return func(io.Reader) (admission.Interface, error) { return a, nil }
}

// both applies an initializer's setting to the webhook machinery of both phases.
func (a *Admission) both(set func(*generic.Webhook)) {
	set(a.mutating.Webhook)
	set(a.validating.Webhook)
}

// The API server's plugin initializers, for both phases; some also reach the Kubernetes host.

// SetAuthenticationInfoResolverWrapper implements initializer.WantsAuthenticationInfoResolverWrapper.
func (a *Admission) SetAuthenticationInfoResolverWrapper(w webhookutil.AuthenticationInfoResolverWrapper) {
	a.both(func(h *generic.Webhook) { h.SetAuthenticationInfoResolverWrapper(w) })
}

// SetServiceResolver implements initializer.WantsServiceResolver.
func (a *Admission) SetServiceResolver(r webhookutil.ServiceResolver) {
	a.both(func(h *generic.Webhook) { h.SetServiceResolver(r) })
}

// SetAPIServerID implements initializer.WantsAPIServerID.
func (a *Admission) SetAPIServerID(id string) {
	a.both(func(h *generic.Webhook) { h.SetAPIServerID(id) })
}

// SetExcludedAdmissionResources implements initializer.WantsExcludedAdmissionResources.
func (a *Admission) SetExcludedAdmissionResources(r []schema.GroupResource) {
	a.both(func(h *generic.Webhook) { h.SetExcludedAdmissionResources(r) })
}

// InspectFeatureGates implements initializer.WantsFeatures.
func (a *Admission) InspectFeatureGates(g featuregate.FeatureGate) {
	a.both(func(h *generic.Webhook) { h.InspectFeatureGates(g) })
}

// SetExternalKubeClientSet implements initializer.WantsExternalKubeClientSet.
func (a *Admission) SetExternalKubeClientSet(c kubernetes.Interface) {
	a.both(func(h *generic.Webhook) { h.SetExternalKubeClientSet(c) })
}

// SetExternalKubeInformerFactory implements initializer.WantsExternalKubeInformerFactory.
func (a *Admission) SetExternalKubeInformerFactory(f informers.SharedInformerFactory) {
	a.both(func(h *generic.Webhook) { h.SetExternalKubeInformerFactory(f) })
}

// SetDynamicClient implements initializer.WantsDynamicClient (for the Kubewarden host).
func (a *Admission) SetDynamicClient(c dynamic.Interface) { a.kube.setClient(c) }

// SetRESTMapper implements initializer.WantsRESTMapper (for the Kubewarden host).
func (a *Admission) SetRESTMapper(m meta.RESTMapper) { a.kube.setMapper(m) }

// SetUnconditionalAuthorizer implements initializer.WantsUnconditionalAuthorizer: match
// conditions and the Kubewarden host's can_i use it.
func (a *Admission) SetUnconditionalAuthorizer(authz authorizer.UnconditionalAuthorizer) {
	a.both(func(h *generic.Webhook) { h.SetUnconditionalAuthorizer(authz) })
	a.kube.setAuthorizer(authz)
}

// SetDrainedNotification implements initializer.WantsDrainedNotification: the Kubewarden host's
// informers stop with the server.
func (a *Admission) SetDrainedNotification(stop <-chan struct{}) {
	a.both(func(h *generic.Webhook) { h.SetDrainedNotification(stop) })
	a.kube.setStop(stop)
}

// ValidateInitialization implements admission.InitializationValidator.
func (a *Admission) ValidateInitialization() error {
	return errors.Join(a.mutating.ValidateInitialization(), a.validating.ValidateInitialization())
}

// accessorFor describes a module as the webhook it stands in for.
func accessorFor(uid string, m AdmissionModule) webhook.WebhookAccessor {
	everything := func(s *metav1.LabelSelector) *metav1.LabelSelector {
		if s == nil {
			return &metav1.LabelSelector{}
		}
		return s
	}
	failurePolicy := m.FailurePolicy
	if failurePolicy == "" {
		failurePolicy = admissionregistrationv1.Fail
	}
	matchPolicy := admissionregistrationv1.Equivalent
	sideEffects := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	const configuration = "wasmkube-modules"
	if m.Mutating {
		return webhook.NewMutatingWebhookAccessor(uid, configuration, &admissionregistrationv1.MutatingWebhook{
			Name: m.Name(), Rules: m.Rules, FailurePolicy: &failurePolicy, MatchPolicy: &matchPolicy,
			NamespaceSelector: everything(m.NamespaceSelector), ObjectSelector: everything(m.ObjectSelector),
			SideEffects: &sideEffects, AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy: &never, MatchConditions: m.MatchConditions,
		})
	}
	return webhook.NewValidatingWebhookAccessor(uid, configuration, &admissionregistrationv1.ValidatingWebhook{
		Name: m.Name(), Rules: m.Rules, FailurePolicy: &failurePolicy, MatchPolicy: &matchPolicy,
		NamespaceSelector: everything(m.NamespaceSelector), ObjectSelector: everything(m.ObjectSelector),
		SideEffects: &sideEffects, AdmissionReviewVersions: []string{"v1"}, MatchConditions: m.MatchConditions,
	})
}

// generationSource is the webhook machinery's source of hooks, which hands it none: the
// dispatcher takes the modules of the generation current when it runs (Live), so that the hooks
// it calls and the generation it holds are the same.
type generationSource struct{}

func (generationSource) Webhooks() []webhook.WebhookAccessor { return nil }
func (generationSource) HasSynced() bool                     { return true }

// dispatcher calls the modules of one phase in order.
type dispatcher struct {
	a *Admission
	p *phase
}

// Dispatch calls the modules of the generation current now, which it holds until it returns
// (the machinery passes no hooks: generationSource).
func (d *dispatcher) Dispatch(ctx context.Context, attr admission.Attributes, o admission.ObjectInterfaces, _ []webhook.WebhookAccessor) error {
	if d.p.mutating && attr.GetReinvocationContext().IsReinvoke() {
		return nil // mutating modules are not re-invoked (reinvocationPolicy Never)
	}
	gen, release := d.a.live.acquire()
	defer release()
	hooks := gen.validating
	if d.p.mutating {
		hooks = gen.mutating
	}
	v := &versionedAttributes{attr: attr, o: o}
	for _, h := range hooks {
		check := attr
		if v.va != nil {
			check = v.va
		}
		invocation, statusErr := d.p.ShouldCallHook(ctx, h, check, o, v)
		if statusErr != nil {
			return statusErr
		}
		if invocation == nil {
			continue
		}
		va, err := v.VersionedAttribute(invocation.Kind)
		if err != nil {
			return err
		}
		if err := d.a.call(ctx, h.(moduleAccessor).module, invocation, va, o, &v.encoded); err != nil {
			return err
		}
	}
	// Hand the mutated object back to the admission chain in its internal version.
	if v.va != nil && v.va.VersionedObject.Object() != nil && v.va.Dirty {
		return o.GetObjectConvertor().Convert(v.va.VersionedObject.Object(), v.va.Attributes.GetObject(), nil)
	}
	return nil
}

// versionedAttributes converts the request's objects to the version a module asks for, once,
// and keeps the mutations of earlier modules.
type versionedAttributes struct {
	attr    admission.Attributes
	o       admission.ObjectInterfaces
	va      *admission.VersionedAttributes
	encoded encodedObjects
}

// encodedObjects keeps the JSON of a request's object and old object while they stay the same
// objects, so that every module a request reaches after the first sends the JSON encoded once
// (in the server, encoding a ConfigMap took ~20 µs of a module's ~125 µs). A module's patch
// and a conversion to another version replace the object (VersionedAttributes.UpdateObject,
// ConvertVersionedAttributes): a new object is encoded anew. Nothing changes an object in place
// between two modules of a phase.
type encodedObjects struct{ object, oldObject requestObject }

// requestObject is one of them: the object and its JSON.
type requestObject struct {
	obj  runtime.Object
	json []byte
}

// fill sets r's objects' Raw (kept beside Object, which Go admitters read) from the cache, or
// encodes them as RawExtension.MarshalJSON would.
func (e *encodedObjects) fill(r *admissionv1.AdmissionRequest) error {
	if err := e.object.fill(&r.Object); err != nil {
		return err
	}
	return e.oldObject.fill(&r.OldObject)
}

func (e *requestObject) fill(ext *runtime.RawExtension) error {
	if ext.Raw != nil || ext.Object == nil {
		return nil
	}
	if e.obj != ext.Object {
		b, err := stdjson.Marshal(ext.Object) // what RawExtension.MarshalJSON writes
		if err != nil {
			return fmt.Errorf("encode %s: %w", ext.Object.GetObjectKind().GroupVersionKind(), err)
		}
		e.obj, e.json = ext.Object, b
	}
	ext.Raw = e.json
	return nil
}

func (v *versionedAttributes) VersionedAttribute(gvk schema.GroupVersionKind) (*admission.VersionedAttributes, error) {
	if v.va == nil {
		va, err := admission.NewVersionedAttributes(v.attr, gvk, v.o)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		v.va = va
		return va, nil
	}
	if err := admission.ConvertVersionedAttributes(v.va, gvk, v.o); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	return v.va, nil
}

// call sends one request to one module, decides (DecideAdmission) and acts on the decision.
func (a *Admission) call(ctx context.Context, m AdmissionModule, invocation *generic.WebhookInvocation, va *admission.VersionedAttributes, o admission.ObjectInterfaces, encoded *encodedObjects) error {
	review := webhookrequest.CreateV1AdmissionReview(uuid.NewUUID(), va, invocation)
	var res *admissionv1.AdmissionResponse
	err := encoded.fill(review.Request)
	began := time.Now()
	if err == nil {
		res, err = m.Admit(ctx, review, m.Mutating)
	}
	took := time.Since(began)
	d := DecideAdmission(m, res, err)
	if d.Patch != nil {
		if err := applyPatch(va, d.Patch, o); err != nil {
			d = d.PatchFailed(m, err)
		}
	}
	a.log(d, va)
	if a.live.decisions != nil {
		a.live.decisions.Record(admissionDecision(d, m.Mutating, va, took))
	}
	for k, v := range d.AuditAnnotations {
		if err := va.Attributes.AddAnnotation(k, v); err != nil {
			a.logger.Warn("admission module sent an audit annotation that cannot be recorded", "module", m.Name(), "key", k, "err", err)
		}
	}
	for _, w := range d.Warnings {
		warning.AddWarning(ctx, "", w)
	}
	if d.FailedOpen && ctx.Err() != nil {
		return apierrors.NewTimeoutError("request did not complete within requested timeout", 0)
	}
	if d.Denied != nil {
		return d.Denied
	}
	return nil
}

// admissionDecision describes d for the decision log. A message about a Secret has the Secret's
// values redacted.
func admissionDecision(d *AdmissionDecision, mutating bool, va *admission.VersionedAttributes, took time.Duration) Decision {
	hook := "admission (validating)"
	if mutating {
		hook = "admission (mutating)"
	}
	gvr := va.GetResource()
	rec := Decision{Time: time.Now(), Module: d.Module, Hook: hook, Operation: string(va.GetOperation()),
		Resource:  resourcePath(gvr.Group, gvr.Version, gvr.Resource, va.GetSubresource()),
		Namespace: va.GetNamespace(), Name: va.GetName(), LatencyMicros: took.Microseconds(), Result: ResultAllowed}
	if u := va.GetUserInfo(); u != nil {
		rec.User = u.GetName()
	}
	rec.Result, rec.Message = d.logged()
	if gvr.Resource == "secrets" && gvr.Group == "" {
		if rec.Result == ResultMutated {
			rec.Message = "(the patch of a Secret is not shown)"
		}
		rec.Message = redactSecret(rec.Message, va)
	}
	if len(rec.Message) > maxDecisionMessage { // after redaction: a cut must not split a value
		rec.Message = rec.Message[:maxDecisionMessage] + "…"
	}
	return rec
}

// logged is the result and message the decision log shows of d.
func (d *AdmissionDecision) logged() (result, message string) {
	switch {
	case d.Denied != nil && d.Failure != nil:
		return ResultFailed, "rejected (failurePolicy Fail): " + d.Denied.ErrStatus.Message
	case d.Denied != nil:
		return ResultDenied, d.Denied.ErrStatus.Message
	case d.FailedOpen:
		return ResultFailed, "ignored (failurePolicy Ignore): " + firstLine(d.Failure.Error())
	case d.Verdict != "":
		return ResultAllowed, "monitor mode: " + d.Verdict
	case d.Patch != nil && d.Patch.Type == envelope.PatchTypeFull:
		return ResultMutated, "replaced the object (a Full patch)"
	case d.Patch != nil:
		return ResultMutated, string(d.Patch.JSON)
	}
	return ResultAllowed, ""
}

// maxDecisionMessage bounds a message in the decision log (a whole patched object can be long).
const maxDecisionMessage = 500

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// redactSecret redacts the values of the request's Secrets (object and old object) from msg.
func redactSecret(msg string, va *admission.VersionedAttributes) string {
	for _, obj := range []runtime.Object{va.VersionedObject.Object(), va.VersionedOldObject.Object()} {
		if s, ok := obj.(*corev1.Secret); ok && s != nil {
			var withheld bool
			if msg, withheld = redactValues(msg, s.Data, s.StringData); withheld {
				return "(withheld: the Secret has values too short to redact from it)"
			}
		}
	}
	return msg
}

// log writes what the server log gets of a decision: monitor verdicts and failures, with the
// whole error (stderr included), which clients never see.
func (a *Admission) log(d *AdmissionDecision, va *admission.VersionedAttributes) {
	switch {
	case d.Verdict != "":
		attrs := []any{"module", d.Module, "verdict", d.Verdict, "resource", va.GetResource().String(), "namespace", va.GetNamespace(), "name", va.GetName()}
		if d.Failure != nil {
			attrs = append(attrs, "err", d.Failure)
		}
		a.logger.Info("admission module in monitor mode", attrs...)
	case d.Failure != nil && d.FailedOpen:
		a.logger.Warn("admission module failed; ignored (failurePolicy Ignore)", "module", d.Module, "err", d.Failure)
	case d.Failure != nil:
		a.logger.Warn("admission module failed; request rejected (failurePolicy Fail)", "module", d.Module, "err", d.Failure)
	}
}

// applyPatch applies a JSONPatch or a Full patch to the versioned object, as the mutating
// webhook plugin does for JSONPatch.
func applyPatch(va *admission.VersionedAttributes, patch *Patch, o admission.ObjectInterfaces) error {
	obj := va.VersionedObject.Object()
	if obj == nil {
		return fmt.Errorf("the module patched the object, but %s requests have none", va.GetOperation())
	}
	serializer := json.NewSerializerWithOptions(json.DefaultMetaFactory, o.GetObjectCreater(), o.GetObjectTyper(), json.SerializerOptions{})
	var current []byte // a Full patch replaces the object: no need to encode it
	if patch.Type != envelope.PatchTypeFull {
		var err error
		if current, err = runtime.Encode(serializer, obj); err != nil {
			return fmt.Errorf("encode object: %w", err)
		}
	}
	patched, err := patch.Apply(current)
	if err != nil {
		return err
	}
	var fresh runtime.Object
	if _, ok := obj.(*unstructured.Unstructured); ok {
		fresh = &unstructured.Unstructured{}
	} else {
		var err error
		if fresh, err = o.GetObjectCreater().New(va.VersionedKind); err != nil {
			return err
		}
	}
	fresh, gvk, err := serializer.Decode(patched, &va.VersionedKind, fresh)
	if err != nil {
		return fmt.Errorf("the patched object does not decode as %s: %w", va.VersionedKind, err)
	}
	if *gvk != va.VersionedKind {
		return fmt.Errorf("the patched object is a %s, not a %s", gvk, va.VersionedKind)
	}
	if apiequality.Semantic.DeepEqual(obj, fresh) {
		return nil
	}
	va.UpdateObject(fresh)
	o.GetObjectDefaulter().Default(va.VersionedObject.Object())
	return nil
}

// applyJSONPatch applies patch to doc. A panic in json-patch (decodeJSONPatch refuses the
// operations known to make it panic) is an error, so the module's failurePolicy decides the
// request.
func applyJSONPatch(patch jsonpatch.Patch, doc []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("json-patch panicked: %v", r)
		}
	}()
	return patch.Apply(doc)
}
