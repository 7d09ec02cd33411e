package hook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/wasmkube/wasmkube/wasm/kubewarden"
)

// KubernetesHost connects Kubewarden policies to the API server they run in. The API server's
// admission plugin initializers fill it in (Admission forwards them); until then every call
// fails. It answers nothing itself: ForPolicy gives each policy a host limited to what its
// profile entry granted.
type KubernetesHost struct {
	mu     sync.Mutex
	client dynamic.Interface
	mapper meta.RESTMapper
	authz  authorizer.UnconditionalAuthorizer
	stop   <-chan struct{}
	// encoded caches objects' JSON by UID and resource (see encode), for every policy.
	encoded sync.Map
}

// NewKubernetesHost returns a host that is not connected yet.
func NewKubernetesHost() *KubernetesHost { return &KubernetesHost{} }

// PolicyHost answers one Kubewarden policy's kubernetes host calls (get_resource,
// list_resources_by_namespace, list_resources_all, can_i) within its grants: reads come from
// informer caches (started for a kind on its first use, then answered in microseconds), or
// straight from the server with disable_cache or a field selector, always through a client
// that can only get, list and watch the granted kinds; can_i asks the server's authorizer
// directly, when kubernetes/can_i was granted.
//
// # Notes
//
//   - Informers belong to the policy: two policies granted the same kind each keep a cache of
//     it (the encoded JSON is shared).
type PolicyHost struct {
	k      *KubernetesHost
	policy string
	kinds  []schema.GroupVersionKind
	canI   bool

	mu        sync.Mutex
	reader    *grantedReader
	factory   dynamicinformer.DynamicSharedInformerFactory
	informers map[schema.GroupVersionResource]cache.SharedIndexInformer
	// closed is closed by Close: the informers stop (they stop with the server too).
	closed    chan struct{}
	closeOnce sync.Once
	// stop ends the informers: closed when the server stops or the host is closed.
	stop chan struct{}
}

// stopWithServer returns a channel closed when the server stops or h is closed.
func (h *PolicyHost) stopWithServer() chan struct{} {
	h.k.mu.Lock()
	server := h.k.stop
	h.k.mu.Unlock()
	stop := make(chan struct{})
	go func() {
		select {
		case <-server:
		case <-h.closed:
		}
		close(stop)
	}()
	return stop
}

// Close stops the policy's informers and waits for them; a policy replaced by a reload no
// longer keeps its caches. Reads after Close fail.
func (h *PolicyHost) Close() {
	h.closeOnce.Do(func() { close(h.closed) })
	h.mu.Lock()
	factory := h.factory
	h.factory, h.informers = nil, nil
	h.mu.Unlock()
	if factory != nil {
		factory.Shutdown()
	}
}

var _ kubewarden.KubernetesHost = (*PolicyHost)(nil)

// ForPolicy returns the host of the policy named policy, limited to grants: reads of the
// granted contextAwareResources, can_i when a granted hostCapabilities pattern matches
// kubernetes/can_i.
func (k *KubernetesHost) ForPolicy(policy string, grants kubewarden.PolicyGrants) *PolicyHost {
	h := &PolicyHost{k: k, policy: policy, informers: map[schema.GroupVersionResource]cache.SharedIndexInformer{}, closed: make(chan struct{})}
	for _, r := range grants.ContextAwareResources {
		if gv, err := schema.ParseGroupVersion(r.APIVersion); err == nil {
			h.kinds = append(h.kinds, gv.WithKind(r.Kind))
		}
	}
	h.canI = slices.ContainsFunc(grants.HostCapabilities, func(p string) bool { return kubewarden.CapabilityMatches(p, "kubernetes/can_i") })
	return h
}

// kubernetesRequest is what get_resource and list_resources_* send.
type kubernetesRequest struct {
	APIVersion    string `json:"api_version"`
	Kind          string `json:"kind"`
	Name          string `json:"name"`
	Namespace     string `json:"namespace"`
	LabelSelector string `json:"label_selector"`
	FieldSelector string `json:"field_selector"`
	DisableCache  bool   `json:"disable_cache"`
}

// Kubernetes implements kubewarden.KubernetesHost.
func (h *PolicyHost) Kubernetes(ctx context.Context, operation string, payload []byte) ([]byte, error) {
	if operation == "can_i" {
		if !h.canI {
			return nil, fmt.Errorf("policy %s is not granted kubernetes/can_i (grants.hostCapabilities of its profile entry)", h.policy)
		}
		return h.k.canI(ctx, payload)
	}
	var req kubernetesRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, fmt.Errorf("kubernetes/%s: %w", operation, err)
	}
	switch operation {
	case "get_resource":
		return h.get(ctx, req)
	case "list_resources_by_namespace":
		if req.Namespace == "" {
			return nil, errors.New("kubernetes/list_resources_by_namespace: namespace is required")
		}
		return h.list(ctx, req)
	case "list_resources_all":
		req.Namespace = ""
		return h.list(ctx, req)
	}
	return nil, fmt.Errorf("unknown operation %s in namespace kubernetes", operation)
}

func (k *KubernetesHost) connected() (dynamic.Interface, meta.RESTMapper, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.client == nil || k.mapper == nil {
		return nil, nil, errors.New("kubernetes host calls are not available yet: the API server is still starting")
	}
	return k.client, k.mapper, nil
}

// readerFor returns the policy's client, limited to its granted kinds, once connected.
func (h *PolicyHost) readerFor() (*grantedReader, meta.RESTMapper, error) {
	client, mapper, err := h.k.connected()
	if err != nil {
		return nil, nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reader == nil {
		h.reader = newGrantedReader(client, mapper, h.policy, h.kinds)
	}
	return h.reader, mapper, nil
}

// resource maps the request's kind to its resource.
func (h *PolicyHost) resource(req kubernetesRequest) (*grantedReader, schema.GroupVersionResource, bool, error) {
	reader, mapper, err := h.readerFor()
	if err != nil {
		return nil, schema.GroupVersionResource{}, false, err
	}
	gv, err := schema.ParseGroupVersion(req.APIVersion)
	if err != nil {
		return nil, schema.GroupVersionResource{}, false, err
	}
	m, err := mapper.RESTMapping(gv.WithKind(req.Kind).GroupKind(), gv.Version)
	if err != nil {
		return nil, schema.GroupVersionResource{}, false, fmt.Errorf("%s %s: %w", req.APIVersion, req.Kind, err)
	}
	return reader, m.Resource, m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

func (h *PolicyHost) get(ctx context.Context, req kubernetesRequest) ([]byte, error) {
	reader, gvr, namespaced, err := h.resource(req)
	if err != nil {
		return nil, err
	}
	ns := req.Namespace
	if !namespaced {
		ns = ""
	}
	if req.DisableCache {
		obj, err := reader.Resource(gvr).Namespace(ns).Get(ctx, req.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return json.Marshal(obj)
	}
	informer, err := h.informer(ctx, reader, gvr)
	if err != nil {
		return nil, err
	}
	key := req.Name
	if ns != "" {
		key = ns + "/" + req.Name
	}
	obj, exists, err := informer.GetStore().GetByKey(key)
	switch {
	case err != nil:
		return nil, err
	case !exists:
		return nil, fmt.Errorf("%s %q not found", gvr.GroupResource(), key)
	}
	return h.k.encode(gvr, obj)
}

func (h *PolicyHost) list(ctx context.Context, req kubernetesRequest) ([]byte, error) {
	reader, gvr, _, err := h.resource(req)
	if err != nil {
		return nil, err
	}
	if req.FieldSelector != "" || req.DisableCache {
		list, err := reader.Resource(gvr).Namespace(req.Namespace).List(ctx, metav1.ListOptions{LabelSelector: req.LabelSelector, FieldSelector: req.FieldSelector})
		if err != nil {
			return nil, err
		}
		return json.Marshal(list)
	}
	selector, err := labels.Parse(req.LabelSelector)
	if err != nil {
		return nil, fmt.Errorf("label_selector: %w", err)
	}
	informer, err := h.informer(ctx, reader, gvr)
	if err != nil {
		return nil, err
	}
	objs := informer.GetStore().List()
	if req.Namespace != "" {
		if objs, err = informer.GetIndexer().ByIndex(cache.NamespaceIndex, req.Namespace); err != nil {
			return nil, err
		}
	}
	// The list is assembled from each object's JSON, encoded once per resourceVersion.
	head, _ := json.Marshal(map[string]string{"apiVersion": req.APIVersion, "kind": req.Kind + "List"})
	out := append(head[:len(head)-1], `,"metadata":{},"items":[`...)
	first := true
	for _, obj := range objs {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok || !selector.Matches(labels.Set(u.GetLabels())) {
			continue
		}
		b, err := h.k.encode(gvr, u)
		if err != nil {
			return nil, err
		}
		if !first {
			out = append(out, ',')
		}
		out, first = append(out, b...), false
	}
	return append(out, "]}"...), nil
}

// encodedObject is an object's JSON at one resourceVersion.
type encodedObject struct {
	resourceVersion string
	json            []byte
}

// encodedKey identifies an object as read through one resource (group, version): the same
// object read at another version has another shape.
type encodedKey struct {
	uid types.UID
	gvr schema.GroupVersionResource
}

// encode returns the JSON of a cached object read through gvr, encoding it only when its
// resourceVersion changed. Objects are immutable in the informer's store; entries go when the
// object is deleted.
func (k *KubernetesHost) encode(gvr schema.GroupVersionResource, obj any) ([]byte, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || u.GetUID() == "" {
		return json.Marshal(obj)
	}
	key, rv := encodedKey{u.GetUID(), gvr}, u.GetResourceVersion()
	if e, ok := k.encoded.Load(key); ok && e.(encodedObject).resourceVersion == rv {
		return e.(encodedObject).json, nil
	}
	b, err := json.Marshal(u)
	if err != nil {
		return nil, err
	}
	k.encoded.Store(key, encodedObject{rv, b})
	return b, nil
}

// forget drops the cached JSON of an object deleted from gvr's informer.
func (k *KubernetesHost) forget(gvr schema.GroupVersionResource, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if u, ok := obj.(*unstructured.Unstructured); ok {
		k.encoded.Delete(encodedKey{u.GetUID(), gvr})
	}
}

// informer returns the policy's synced informer of gvr, starting it on first use; it lists
// and watches through reader, and only a granted resource gets one (checked when it is made).
func (h *PolicyHost) informer(ctx context.Context, reader *grantedReader, gvr schema.GroupVersionResource) (cache.SharedIndexInformer, error) {
	h.mu.Lock()
	if h.informers == nil {
		h.mu.Unlock()
		return nil, fmt.Errorf("policy %s was closed (replaced by a reload, or the server is stopping)", h.policy)
	}
	informer, ok := h.informers[gvr]
	if !ok {
		if err := reader.check(gvr); err != nil {
			h.mu.Unlock()
			return nil, err
		}
		if h.factory == nil {
			h.factory = dynamicinformer.NewDynamicSharedInformerFactory(reader, 0)
			h.stop = h.stopWithServer()
		}
		informer = h.factory.ForResource(gvr).Informer()
		forget := func(obj any) { h.k.forget(gvr, obj) }
		if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: forget}); err != nil {
			h.mu.Unlock()
			return nil, err
		}
		h.informers[gvr] = informer
		h.factory.Start(h.stop)
	}
	h.mu.Unlock()
	if informer.HasSynced() {
		return informer, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return nil, fmt.Errorf("the cache of %s did not sync in time", gvr.GroupResource())
	}
	return informer, nil
}

// canI answers can_i with the API server's authorizer.
func (k *KubernetesHost) canI(ctx context.Context, payload []byte) ([]byte, error) {
	var req struct {
		SAR struct {
			User               string   `json:"user"`
			Groups             []string `json:"groups"`
			ResourceAttributes struct {
				Namespace   string `json:"namespace"`
				Verb        string `json:"verb"`
				Group       string `json:"group"`
				Version     string `json:"version"`
				Resource    string `json:"resource"`
				Subresource string `json:"subresource"`
				Name        string `json:"name"`
			} `json:"resource_attributes"`
		} `json:"subject_access_review"`
	}
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, fmt.Errorf("kubernetes/can_i: %w", err)
	}
	k.mu.Lock()
	authz := k.authz
	k.mu.Unlock()
	if authz == nil {
		return nil, errors.New("kubernetes/can_i is not available yet: the API server is still starting")
	}
	ra := req.SAR.ResourceAttributes
	decision, reason, err := authz.Authorize(ctx, authorizer.AttributesRecord{
		User: &user.DefaultInfo{Name: req.SAR.User, Groups: req.SAR.Groups}, Verb: ra.Verb,
		Namespace: ra.Namespace, APIGroup: ra.Group, APIVersion: ra.Version, Resource: ra.Resource,
		Subresource: ra.Subresource, Name: ra.Name, ResourceRequest: true,
	})
	status := map[string]any{"allowed": decision == authorizer.DecisionAllow, "reason": reason}
	if decision == authorizer.DecisionDeny {
		status["denied"] = true
	}
	if err != nil {
		status["evaluationError"] = err.Error()
	}
	return json.Marshal(status)
}

// Connect points the host at an API server: a dynamic client and REST mapper for reads, an
// authorizer for can_i (nil: can_i fails), stop ending the informers. The admission plugin does
// this through the API server's initializers; Connect serves other callers (tools, benchmarks).
func (k *KubernetesHost) Connect(c dynamic.Interface, m meta.RESTMapper, authz authorizer.UnconditionalAuthorizer, stop <-chan struct{}) {
	k.setClient(c)
	k.setMapper(m)
	k.setAuthorizer(authz)
	k.setStop(stop)
}

func (k *KubernetesHost) setClient(c dynamic.Interface) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.client = c
}

func (k *KubernetesHost) setMapper(m meta.RESTMapper) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.mapper = m
}

func (k *KubernetesHost) setAuthorizer(a authorizer.UnconditionalAuthorizer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.authz = a
}

func (k *KubernetesHost) setStop(stop <-chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stop = stop
}
