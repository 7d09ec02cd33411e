package hook

import (
	"context"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
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

	"github.com/wasmkube/wasmkube/wasm"
	"github.com/wasmkube/wasmkube/wasm/envelope"
)

// AdmissionPluginName is the admission plugin's name, as the original proof of concept named it.
const AdmissionPluginName = "WASM"

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
}

// Admission is the admission plugin that runs modules: mutating modules in order in the
// mutating phase (each sees the previous one's changes), then validating modules in order in the
// validating phase.
//
// It reuses the webhook plugins' machinery: each module is described as a webhook (rules,
// selectors, match conditions, matchPolicy Equivalent), so who is called and with which
// AdmissionReview is decided exactly as for webhooks; only the call is in-process.
//
// # Notes
//
//   - Requests webhooks never see are not sent to modules either: TokenReviews and other
//     virtual resources, and webhook and policy configurations.
//   - A module that fails (trap, timeout, bad answer) rejects the request with 500 unless its
//     failurePolicy is Ignore; then the failure is logged and recorded in the audit annotation
//     MODULE/failed-open. Clients and the audit annotation learn the kind of failure (and a
//     module's own error message); its stderr and other details stay in the server log.
//   - Mutating modules are not re-invoked when later plugins change the object
//     (reinvocationPolicy Never).
//   - Modules have no side effects, so dry-run requests are sent to them like any other, with
//     dryRun: true.
type Admission struct {
	*generic.Webhook
	hooks   []webhook.WebhookAccessor
	modules map[string]AdmissionModule // by webhook UID
	logger  *slog.Logger
	kube    *KubernetesHost
}

var (
	_ admission.MutationInterface   = (*Admission)(nil)
	_ admission.ValidationInterface = (*Admission)(nil)
)

// NewAdmission builds the plugin for modules. The API server's plugin initializers complete
// it (namespace lister, clients, authorizer, drained notification) before its first use, and
// connect kube, when given, the host of the Kubewarden policies among the modules.
func NewAdmission(modules []AdmissionModule, logger *slog.Logger, kube *KubernetesHost) (*Admission, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if kube == nil {
		kube = NewKubernetesHost()
	}
	a := &Admission{modules: map[string]AdmissionModule{}, logger: logger, kube: kube}
	for _, m := range modules {
		uid := "wasm/" + m.Name()
		a.modules[uid] = m
		a.hooks = append(a.hooks, accessorFor(uid, m))
	}
	handler := admission.NewHandler(admission.Create, admission.Update, admission.Delete, admission.Connect)
	source := func(informers.SharedInformerFactory, sets.Set[schema.GroupResource]) generic.Source {
		return staticSource(a.hooks)
	}
	dispatcher := func(*webhookutil.ClientManager) generic.Dispatcher { return &dispatcher{a: a} }
	var err error
	if a.Webhook, err = generic.NewWebhook(handler, nil, source, dispatcher); err != nil {
		return nil, fmt.Errorf("admission plugin %s: %w", AdmissionPluginName, err)
	}
	return a, nil
}

// Factory returns an admission.Factory that hands out a (the API server asks once). The
// plugin's own configuration, if any, has been read before: the reader is ignored.
func (a *Admission) Factory() admission.Factory {
	return func(io.Reader) (admission.Interface, error) { return a, nil }
}

// SetDynamicClient implements initializer.WantsDynamicClient (for the Kubewarden host).
func (a *Admission) SetDynamicClient(c dynamic.Interface) { a.kube.setClient(c) }

// SetRESTMapper implements initializer.WantsRESTMapper (for the Kubewarden host).
func (a *Admission) SetRESTMapper(m meta.RESTMapper) { a.kube.setMapper(m) }

// SetUnconditionalAuthorizer implements initializer.WantsUnconditionalAuthorizer: match
// conditions and the Kubewarden host's can_i use it.
func (a *Admission) SetUnconditionalAuthorizer(authz authorizer.UnconditionalAuthorizer) {
	a.Webhook.SetUnconditionalAuthorizer(authz)
	a.kube.setAuthorizer(authz)
}

// SetDrainedNotification implements initializer.WantsDrainedNotification: the Kubewarden host's
// informers stop with the server.
func (a *Admission) SetDrainedNotification(stop <-chan struct{}) {
	a.Webhook.SetDrainedNotification(stop)
	a.kube.setStop(stop)
}

// Admit runs the mutating modules.
func (a *Admission) Admit(ctx context.Context, attr admission.Attributes, o admission.ObjectInterfaces) error {
	return a.Dispatch(context.WithValue(ctx, phaseKey{}, phaseMutating), attr, o)
}

// Validate runs the validating modules.
func (a *Admission) Validate(ctx context.Context, attr admission.Attributes, o admission.ObjectInterfaces) error {
	return a.Dispatch(context.WithValue(ctx, phaseKey{}, phaseValidating), attr, o)
}

type phaseKey struct{}

type phase int

const (
	phaseMutating phase = iota + 1
	phaseValidating
)

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

// staticSource is the fixed list of modules (hot reload will replace it).
type staticSource []webhook.WebhookAccessor

func (s staticSource) Webhooks() []webhook.WebhookAccessor { return s }
func (s staticSource) HasSynced() bool                     { return true }

// dispatcher calls the modules of one phase in order.
type dispatcher struct{ a *Admission }

func (d *dispatcher) Dispatch(ctx context.Context, attr admission.Attributes, o admission.ObjectInterfaces, hooks []webhook.WebhookAccessor) error {
	mutating := ctx.Value(phaseKey{}) == phaseMutating
	if mutating && attr.GetReinvocationContext().IsReinvoke() {
		return nil
	}
	v := &versionedAttributes{attr: attr, o: o}
	for _, h := range hooks {
		if _, isMutating := h.GetMutatingWebhook(); isMutating != mutating {
			continue
		}
		check := attr
		if v.va != nil {
			check = v.va
		}
		invocation, statusErr := d.a.ShouldCallHook(ctx, h, check, o, v)
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
		if err := d.a.call(ctx, d.a.modules[h.GetUID()], invocation, va, o); err != nil {
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
	attr admission.Attributes
	o    admission.ObjectInterfaces
	va   *admission.VersionedAttributes
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

// call sends one request to one module and applies its answer to va.
func (a *Admission) call(ctx context.Context, m AdmissionModule, invocation *generic.WebhookInvocation, va *admission.VersionedAttributes, o admission.ObjectInterfaces) error {
	review := webhookrequest.CreateV1AdmissionReview(uuid.NewUUID(), va, invocation)
	res, err := m.Admit(ctx, review, m.Mutating)
	if m.Monitor {
		a.monitor(m, va, res, err)
		return nil
	}
	if err == nil && res.Allowed && len(res.Patch) > 0 {
		err = applyPatch(m.Name(), va, res, o)
	}
	if err != nil {
		return a.failed(ctx, m, va, err)
	}
	for k, val := range res.AuditAnnotations {
		key := m.Name() + "/" + k
		if err := va.Attributes.AddAnnotation(key, val); err != nil {
			a.logger.Warn("admission module sent an audit annotation that cannot be recorded", "module", m.Name(), "key", key, "err", err)
		}
	}
	for _, w := range res.Warnings {
		warning.AddWarning(ctx, "", w)
	}
	if !res.Allowed {
		result := res.Result
		if m.Message != "" {
			result = &metav1.Status{Message: m.Message}
			if res.Result != nil {
				result.Code, result.Reason = res.Result.Code, res.Result.Reason
			}
		}
		return Denial(m.Name(), result)
	}
	return nil
}

// monitor records what a module in monitor mode would have decided.
func (a *Admission) monitor(m AdmissionModule, va *admission.VersionedAttributes, res *admissionv1.AdmissionResponse, err error) {
	if err == nil {
		err = CheckPatch(m.Name(), res) // a patch enforcing would refuse is a failure here too
	}
	var verdict string
	switch {
	case err != nil:
		verdict = "failed: " + failureMessage(err)
	case !res.Allowed:
		verdict = "would deny: " + Denial(m.Name(), res.Result).Error()
	case len(res.Patch) > 0:
		verdict = "would mutate"
	default:
		verdict = "would allow"
	}
	attrs := []any{"module", m.Name(), "verdict", verdict, "resource", va.GetResource().String(), "namespace", va.GetNamespace(), "name", va.GetName()}
	if err != nil {
		attrs = append(attrs, "err", err) // the whole error, stderr included, for the server log only
	}
	a.logger.Info("admission module in monitor mode", attrs...)
	if err := va.Attributes.AddAnnotation(m.Name()+"/monitor", verdict); err != nil {
		a.logger.Warn("cannot record monitor audit annotation", "module", m.Name(), "err", err)
	}
}

// failed applies the module's failure policy to a failed call. The server log gets the whole
// error (stderr included); clients and audit annotations get failureMessage.
func (a *Admission) failed(ctx context.Context, m AdmissionModule, va *admission.VersionedAttributes, err error) error {
	if m.FailurePolicy == admissionregistrationv1.Ignore {
		a.logger.Warn("admission module failed; ignored (failurePolicy Ignore)", "module", m.Name(), "err", err)
		if err := va.Attributes.AddAnnotation(m.Name()+"/failed-open", failureMessage(err)); err != nil {
			a.logger.Warn("cannot record failed-open audit annotation", "module", m.Name(), "err", err)
		}
		if ctx.Err() != nil {
			return apierrors.NewTimeoutError("request did not complete within requested timeout", 0)
		}
		return nil
	}
	a.logger.Warn("admission module failed; request rejected (failurePolicy Fail)", "module", m.Name(), "err", err)
	return apierrors.NewInternalError(fmt.Errorf("admission WASM module %q failed: %s", m.Name(), failureMessage(err)))
}

// failureMessage is what a client learns of a module's failure: its kind (trap, timeout,
// exit code…) and, for a module's own error answer, that message; never its stderr, nor the
// details of a broken answer, which may hold data of other requests. The server log has them.
func failureMessage(err error) string {
	var ce *wasm.CallError
	if !errors.As(err, &ce) {
		return err.Error() // the host's own message (a patch that does not apply, …)
	}
	switch ce.Kind {
	case wasm.KindModuleError:
		if ce.Err != nil {
			return "the module returned an error: " + ce.Err.Error()
		}
	case wasm.KindExit:
		return fmt.Sprintf("exit: exited with code %d (details in the API server's log)", ce.ExitCode)
	}
	return string(ce.Kind) + " (details in the API server's log)"
}

// Denial is the error a client sees when a module rejects its request: a *StatusError with the
// module's status, its code (403 unless it named one of at least 400) and the message
// DenialMessage builds.
func Denial(module string, result *metav1.Status) *apierrors.StatusError {
	status := metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden}
	if result != nil {
		status.Details = result.Details
		if result.Code >= http.StatusBadRequest {
			status.Code, status.Reason = result.Code, result.Reason
			if status.Reason == "" {
				status.Reason = reasonFor(result.Code)
			}
		}
	}
	status.Message = DenialMessage(module, result)
	return &apierrors.StatusError{ErrStatus: status}
}

// DenialMessage is the message a client sees when the module rejects a request.
func DenialMessage(module string, status *metav1.Status) string {
	why := "without explanation"
	switch {
	case status != nil && status.Message != "":
		why = status.Message
	case status != nil && status.Reason != "":
		why = string(status.Reason)
	}
	return fmt.Sprintf("admission WASM module %q denied the request: %s", module, why)
}

// CheckPatch checks the patch of an answer that allows with one as the admission plugin does
// where it applies it (a JSONPatch decodes, each operation with the members RFC 6902 requires;
// a Full patch is JSON), without applying it: monitor mode and `wasmkube module run` report what
// enforcing would meet. A failure is an invalid response of module.
func CheckPatch(module string, res *admissionv1.AdmissionResponse) error {
	if res == nil || !res.Allowed || len(res.Patch) == 0 {
		return nil
	}
	_, err := decodePatch(module, res)
	return err
}

// decodePatch decodes res's patch: a JSONPatch to its operations; a Full patch is checked to be
// JSON (nil operations). A patch that does not decode is an invalid response of module.
func decodePatch(module string, res *admissionv1.AdmissionResponse) (jsonpatch.Patch, error) {
	invalid := func(err error) error {
		return &wasm.CallError{Module: module, Export: envelope.ExportValidate, Kind: wasm.KindInvalidResponse, Err: err}
	}
	switch {
	case res.PatchType == nil:
		return nil, invalid(errors.New("a patch needs a patchType (JSONPatch or Full)"))
	case *res.PatchType == admissionv1.PatchTypeJSONPatch:
		patch, err := decodeJSONPatch(res.Patch)
		if err != nil {
			return nil, invalid(err)
		}
		return patch, nil
	case *res.PatchType == envelope.PatchTypeFull:
		if !stdjson.Valid(res.Patch) {
			return nil, invalid(errors.New("a Full patch must hold the whole object as JSON"))
		}
		return nil, nil
	}
	return nil, invalid(fmt.Errorf("unknown patchType %q (JSONPatch or Full)", *res.PatchType))
}

// applyPatch applies a JSONPatch or a Full patch to the versioned object, as the mutating
// webhook plugin does for JSONPatch.
func applyPatch(module string, va *admission.VersionedAttributes, res *admissionv1.AdmissionResponse, o admission.ObjectInterfaces) error {
	obj := va.VersionedObject.Object()
	if obj == nil {
		return fmt.Errorf("the module patched the object, but %s requests have none", va.GetOperation())
	}
	patch, err := decodePatch(module, res)
	if err != nil {
		return err
	}
	serializer := json.NewSerializerWithOptions(json.DefaultMetaFactory, o.GetObjectCreater(), o.GetObjectTyper(), json.SerializerOptions{})
	var patched []byte
	switch *res.PatchType {
	case admissionv1.PatchTypeJSONPatch:
		current, err := runtime.Encode(serializer, obj)
		if err != nil {
			return fmt.Errorf("encode object: %w", err)
		}
		if patched, err = applyJSONPatch(patch, current); err != nil {
			return fmt.Errorf("apply JSON patch: %w", err)
		}
	case envelope.PatchTypeFull:
		patched = res.Patch
	}
	var fresh runtime.Object
	if _, ok := obj.(*unstructured.Unstructured); ok {
		fresh = &unstructured.Unstructured{}
	} else {
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

// decodeJSONPatch decodes patch and checks that each operation is one RFC 6902 defines and has
// the members it requires: json-patch applies an operation without them by guessing or, for a
// replace of the whole document without a value, by panicking.
func decodeJSONPatch(patch []byte) (jsonpatch.Patch, error) {
	ops, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, fmt.Errorf("the patch is not an RFC 6902 JSON patch: %w", err)
	}
	for i, op := range ops {
		need := []string{"path"}
		switch kind := op.Kind(); kind {
		case "add", "replace", "test":
			need = append(need, "value")
		case "move", "copy":
			need = append(need, "from")
		case "remove":
		default:
			return nil, fmt.Errorf("the patch is not an RFC 6902 JSON patch: operation %d: op %q is not add, remove, replace, move, copy or test", i, kind)
		}
		for _, member := range need {
			if _, ok := op[member]; !ok {
				return nil, fmt.Errorf("the patch is not an RFC 6902 JSON patch: operation %d (%s) has no %q", i, op.Kind(), member)
			}
		}
	}
	return ops, nil
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

// reasonFor names the reason of a status code a module sent without one, so clients can tell
// (kubectl prints "Error from server (Forbidden)").
func reasonFor(code int32) metav1.StatusReason {
	switch code {
	case http.StatusBadRequest:
		return metav1.StatusReasonBadRequest
	case http.StatusUnauthorized:
		return metav1.StatusReasonUnauthorized
	case http.StatusForbidden:
		return metav1.StatusReasonForbidden
	case http.StatusNotFound:
		return metav1.StatusReasonNotFound
	case http.StatusConflict:
		return metav1.StatusReasonConflict
	case http.StatusUnprocessableEntity:
		return metav1.StatusReasonInvalid
	case http.StatusTooManyRequests:
		return metav1.StatusReasonTooManyRequests
	}
	return metav1.StatusReasonUnknown
}
