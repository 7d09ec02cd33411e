package hook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	authorizationv1beta1 "k8s.io/api/authorization/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/wasmkube/wasmkube/wasm/envelope"
)

// The paths of the webhooks a Live serves (the bridge, `wasmkube serve`).
const (
	// WebhookAuthenticatePath takes TokenReviews (authentication webhook).
	WebhookAuthenticatePath = "/authenticate"
	// WebhookAuthorizePath takes SubjectAccessReviews (authorization webhook).
	WebhookAuthorizePath = "/authorize"
	// WebhookAdmissionPath, followed by a module's name, takes that admission module's
	// AdmissionReviews (one webhook per module, with the module's rules and selectors).
	WebhookAdmissionPath = "/admission/"
)

// maxWebhookBody bounds a review's body: an AdmissionReview holds an object and its old version
// (etcd's limit is 1.5 MiB each), plus the request's metadata.
const maxWebhookBody = 8 << 20

// Snapshot returns the current generation, for describing it (which modules, which hooks), not
// for calling it: the generation is not held and may be closed by a later Swap.
func (l *Live) Snapshot() Generation {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.current.Generation
}

// Review decides a SubjectAccessReview with the current generation's authorization modules, as
// Authorize does for the request the review describes; no opinion when there are none.
func (a LiveAuthorizer) Review(ctx context.Context, review *authorizationv1.SubjectAccessReview) (authorizer.Decision, string, error) {
	g, release := a.l.acquire()
	defer release()
	if g.Authorizer == nil {
		return authorizer.DecisionNoOpinion, "", nil
	}
	return g.Authorizer.Review(ctx, review)
}

// WebhookHandlers serve a Live's modules as the webhooks kube-apiserver calls: the TokenReview
// authentication webhook, the SubjectAccessReview authorization webhook, and one admission
// webhook per admission module. The decisions are those of the in-process server (the token
// authenticator, the authorizer and DecideAdmission); what differs is only how the answer
// travels.
//
// # Notes
//
//   - Reviews of API version v1 and v1beta1 are taken (kube-apiserver's authentication and
//     authorization webhooks default to v1beta1); the answer has the request's apiVersion and
//     kind. The versions have the same fields but one: a v1beta1 SubjectAccessReview's groups
//     are "group".
//   - A module that fails is decided by its failure policy, as in-process: an authentication
//     module's failure never authenticates; a failed admission module rejects the request with a
//     500 status (failurePolicy Fail) or lets it pass with the audit annotation failed-open.
//   - A request naming no admission module of the current generation (the profile was edited)
//     gets 404: kube-apiserver then applies the webhook's failurePolicy.
//   - Tokens never appear in logs or answers.
type WebhookHandlers struct {
	live *Live
}

// WebhookHandlers returns the webhook handlers of l.
func (l *Live) WebhookHandlers() WebhookHandlers { return WebhookHandlers{l} }

// Authenticate serves TokenReviews.
func (h WebhookHandlers) Authenticate(w http.ResponseWriter, r *http.Request) {
	var review authenticationv1.TokenReview
	if _, ok := decodeReview(w, r, &review, "authentication.k8s.io", "TokenReview"); !ok {
		return
	}
	ctx := r.Context()
	if len(review.Spec.Audiences) > 0 {
		ctx = authenticator.WithAudiences(ctx, review.Spec.Audiences)
	}
	resp, ok, err := h.live.Token().AuthenticateToken(ctx, review.Spec.Token)
	out := authenticationv1.TokenReview{TypeMeta: review.TypeMeta}
	switch {
	case err != nil:
		out.Status.Error = "the authentication modules failed (details in the bridge's log)"
		h.live.logger.Warn("authentication webhook: the modules failed", "err", envelope.RedactError(err, review.Spec.Token))
	case ok && resp != nil && resp.User != nil:
		u := resp.User
		out.Status.Authenticated = true
		out.Status.Audiences = resp.Audiences
		out.Status.User = authenticationv1.UserInfo{Username: u.GetName(), UID: u.GetUID(), Groups: u.GetGroups()}
		if extra := u.GetExtra(); len(extra) > 0 {
			out.Status.User.Extra = make(map[string]authenticationv1.ExtraValue, len(extra))
			for k, v := range extra {
				out.Status.User.Extra[k] = v
			}
		}
	}
	writeReview(w, &out)
}

// Authorize serves SubjectAccessReviews.
func (h WebhookHandlers) Authorize(w http.ResponseWriter, r *http.Request) {
	var review authorizationv1.SubjectAccessReview
	body, ok := decodeReview(w, r, &review, "authorization.k8s.io", "SubjectAccessReview")
	if !ok {
		return
	}
	if review.APIVersion == "authorization.k8s.io/v1beta1" {
		// v1beta1 names the groups "group": read as v1, a user's groups would be lost, and a
		// module denying a group would see none.
		var beta authorizationv1beta1.SubjectAccessReview
		if err := json.Unmarshal(body, &beta); err != nil {
			http.Error(w, "read the SubjectAccessReview: "+err.Error(), http.StatusBadRequest)
			return
		}
		review.Spec.Groups = beta.Spec.Groups
	}
	out := authorizationv1.SubjectAccessReview{TypeMeta: review.TypeMeta} // the call may rewrite review's
	d, reason, err := h.live.Authorizer().Review(r.Context(), &review)
	out.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: d == authorizer.DecisionAllow,
		Denied: d == authorizer.DecisionDeny, Reason: reason}
	if err != nil {
		out.Status.EvaluationError = firstLine(err.Error())
	}
	writeReview(w, &out)
}

// Admit serves the AdmissionReviews of the admission module named by the path's last element
// (WebhookAdmissionPath + name).
func (h WebhookHandlers) Admit(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, WebhookAdmissionPath)
	var review admissionv1.AdmissionReview
	if _, ok := decodeReview(w, r, &review, "admission.k8s.io", "AdmissionReview"); !ok {
		return
	}
	if review.Request == nil {
		http.Error(w, "the AdmissionReview has no request", http.StatusBadRequest)
		return
	}
	g, release := h.live.acquire()
	defer release()
	m, ok := g.admissionModule(name)
	if !ok {
		http.Error(w, fmt.Sprintf("no admission module %q is served (the profile was edited?): print the webhook configuration again", name), http.StatusNotFound)
		return
	}
	typeMeta := review.TypeMeta // the call may rewrite review's
	began := time.Now()
	res, err := m.Admit(r.Context(), &review, m.Mutating)
	took := time.Since(began)
	d := DecideAdmission(m, res, err)
	out, err := d.WebhookResponse(review.Request)
	if err != nil {
		d = d.PatchFailed(m, err)
		out, _ = d.WebhookResponse(review.Request) // no patch any more: cannot fail
	}
	h.log(d, review.Request)
	if h.live.decisions != nil {
		h.live.decisions.Record(webhookDecision(d, m.Mutating, review.Request, took))
	}
	writeReview(w, &admissionv1.AdmissionReview{TypeMeta: typeMeta, Response: out})
}

// admissionModule returns the generation's admission module named name.
func (g *generation) admissionModule(name string) (AdmissionModule, bool) {
	for _, m := range g.Admission {
		if m.Name() == name {
			return m, true
		}
	}
	return AdmissionModule{}, false
}

// WebhookResponse is the AdmissionResponse a webhook sends for decision d on request req: the
// same verdict, warnings and audit annotations (without the "MODULE/" prefix: kube-apiserver
// prefixes them with the webhook's name), and a patch as a JSON patch, the one patch type
// webhooks may send (a Full patch becomes the JSON patch from the request's object to it).
//
// # Notes
//
//   - A denial carries the module's status (code 403 unless it named one of at least 400);
//     kube-apiserver prefixes its message with `admission webhook "NAME" denied the request`.
//   - A failure under failurePolicy Fail is a denial with code 500 and the message the
//     in-process server would show.
func (d *AdmissionDecision) WebhookResponse(req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
	res := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: d.Denied == nil, Warnings: d.Warnings}
	if len(d.AuditAnnotations) > 0 {
		res.AuditAnnotations = make(map[string]string, len(d.AuditAnnotations))
		for k, v := range d.AuditAnnotations {
			res.AuditAnnotations[strings.TrimPrefix(k, d.Module+"/")] = v
		}
	}
	if d.Denied != nil {
		status := d.Denied.ErrStatus
		if d.Failure == nil {
			status.Message = d.why // kube-apiserver says which webhook denied
		}
		res.Result = &status
		return res, nil
	}
	if d.Patch == nil {
		return res, nil
	}
	patch, err := d.webhookPatch(req.Object.Raw)
	if err != nil {
		return nil, err
	}
	if len(patch) > 0 {
		pt := admissionv1.PatchTypeJSONPatch
		res.Patch, res.PatchType = patch, &pt
	}
	return res, nil
}

// webhookPatch is d's patch as a JSON patch against object; empty when it changes nothing.
func (d *AdmissionDecision) webhookPatch(object []byte) ([]byte, error) {
	if d.Patch.Type != envelope.PatchTypeFull {
		// Checked against RFC 6902 by DecideAdmission; kube-apiserver applies it to the object.
		return d.Patch.JSON, nil
	}
	ops, err := jsonpatch.CreatePatch(object, d.Patch.JSON)
	if err != nil {
		return nil, fmt.Errorf("turn the module's edited object into a JSON patch: %w", err)
	}
	if len(ops) == 0 {
		return nil, nil
	}
	return json.Marshal(ops)
}

// log writes what the bridge's log gets of a decision: monitor verdicts and failures, with the
// whole error, which kube-apiserver's clients never see.
func (h WebhookHandlers) log(d *AdmissionDecision, req *admissionv1.AdmissionRequest) {
	attrs := []any{"module", d.Module, "uid", req.UID, "resource", req.Resource.String(), "namespace", req.Namespace, "name", req.Name}
	switch {
	case d.Verdict != "":
		h.live.logger.Info("admission module in monitor mode", append(attrs, "verdict", d.Verdict)...)
	case d.Failure != nil && d.FailedOpen:
		h.live.logger.Warn("admission module failed; ignored (failurePolicy Ignore)", append(attrs, "err", d.Failure)...)
	case d.Failure != nil:
		h.live.logger.Warn("admission module failed; request rejected (failurePolicy Fail)", append(attrs, "err", d.Failure)...)
	}
}

// webhookDecision describes d for the decision log. Messages about Secrets are withheld: the
// bridge has the Secret only as JSON, and redacting its values from it is not worth the risk.
func webhookDecision(d *AdmissionDecision, mutating bool, req *admissionv1.AdmissionRequest, took time.Duration) Decision {
	hook := "admission (validating)"
	if mutating {
		hook = "admission (mutating)"
	}
	rec := Decision{Time: time.Now(), Module: d.Module, Hook: hook, Operation: string(req.Operation),
		Resource:  resourcePath(req.Resource.Group, req.Resource.Version, req.Resource.Resource, req.SubResource),
		Namespace: req.Namespace, Name: req.Name, User: req.UserInfo.Username, LatencyMicros: took.Microseconds()}
	rec.Result, rec.Message = d.logged()
	if req.Resource.Resource == "secrets" && req.Resource.Group == "" && rec.Message != "" {
		rec.Message = "(withheld: the request is about a Secret)"
	}
	if len(rec.Message) > maxDecisionMessage {
		rec.Message = rec.Message[:maxDecisionMessage] + "…"
	}
	return rec
}

// decodeReview reads a review of group's kind into v and returns its body, or answers 400 / 405 /
// 413 / 415 and reports false.
func decodeReview(w http.ResponseWriter, r *http.Request, v runtime.Object, group, kind string) ([]byte, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "a "+kind+" is POSTed", http.StatusMethodNotAllowed)
		return nil, false
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		http.Error(w, "a "+kind+" is sent as application/json, not "+ct, http.StatusUnsupportedMediaType)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		http.Error(w, fmt.Sprintf("the %s is larger than %d bytes", kind, maxWebhookBody), http.StatusRequestEntityTooLarge)
		return nil, false
	}
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if gvk := v.GetObjectKind().GroupVersionKind(); err == nil && (gvk.Kind != kind || gvk.Group != group || (gvk.Version != "v1" && gvk.Version != "v1beta1")) {
		err = fmt.Errorf("got %s %s, want %s of %s/v1 or v1beta1", gvk.GroupVersion(), gvk.Kind, kind, group)
	}
	if err != nil {
		http.Error(w, "read the "+kind+": "+err.Error(), http.StatusBadRequest)
		return nil, false
	}
	return body, true
}

// writeReview answers with v as JSON.
func writeReview(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode the answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
