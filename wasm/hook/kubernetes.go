package hook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/wasmkube/wasmkube/wasm"
)

// KubernetesHost answers Kubewarden policies' kubernetes host calls from the API server they
// run in: reads come from informer caches (started for a kind on its first use, then answered
// in microseconds), or straight from the server with disable_cache or a field selector; can_i
// asks the server's authorizer directly. The API server's admission plugin initializers fill
// it in (Admission forwards them); until then every call fails.
type KubernetesHost struct {
	mu        sync.Mutex
	client    dynamic.Interface
	mapper    meta.RESTMapper
	authz     authorizer.UnconditionalAuthorizer
	stop      <-chan struct{}
	factory   dynamicinformer.DynamicSharedInformerFactory
	informers map[schema.GroupVersionResource]cache.SharedIndexInformer
	// encoded caches objects' JSON by UID (see encode).
	encoded sync.Map
}

var _ wasm.KubernetesHost = (*KubernetesHost)(nil)

// NewKubernetesHost returns a host that is not connected yet.
func NewKubernetesHost() *KubernetesHost {
	return &KubernetesHost{informers: map[schema.GroupVersionResource]cache.SharedIndexInformer{}}
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

// Kubernetes implements wasm.KubernetesHost.
func (k *KubernetesHost) Kubernetes(ctx context.Context, operation string, payload []byte) ([]byte, error) {
	if operation == "can_i" {
		return k.canI(ctx, payload)
	}
	var req kubernetesRequest
	if err := json.Unmarshal(payload, &req); err != nil {
		return nil, fmt.Errorf("kubernetes/%s: %w", operation, err)
	}
	switch operation {
	case "get_resource":
		return k.get(ctx, req)
	case "list_resources_by_namespace":
		if req.Namespace == "" {
			return nil, errors.New("kubernetes/list_resources_by_namespace: namespace is required")
		}
		return k.list(ctx, req)
	case "list_resources_all":
		req.Namespace = ""
		return k.list(ctx, req)
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

func (k *KubernetesHost) resource(req kubernetesRequest) (schema.GroupVersionResource, bool, error) {
	_, mapper, err := k.connected()
	if err != nil {
		return schema.GroupVersionResource{}, false, err
	}
	gv, err := schema.ParseGroupVersion(req.APIVersion)
	if err != nil {
		return schema.GroupVersionResource{}, false, err
	}
	m, err := mapper.RESTMapping(gv.WithKind(req.Kind).GroupKind(), gv.Version)
	if err != nil {
		return schema.GroupVersionResource{}, false, fmt.Errorf("%s %s: %w", req.APIVersion, req.Kind, err)
	}
	return m.Resource, m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

func (k *KubernetesHost) get(ctx context.Context, req kubernetesRequest) ([]byte, error) {
	gvr, namespaced, err := k.resource(req)
	if err != nil {
		return nil, err
	}
	ns := req.Namespace
	if !namespaced {
		ns = ""
	}
	if req.DisableCache {
		client, _, _ := k.connected()
		obj, err := client.Resource(gvr).Namespace(ns).Get(ctx, req.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return json.Marshal(obj)
	}
	informer, err := k.informer(ctx, gvr)
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
	return k.encode(obj)
}

func (k *KubernetesHost) list(ctx context.Context, req kubernetesRequest) ([]byte, error) {
	gvr, _, err := k.resource(req)
	if err != nil {
		return nil, err
	}
	if req.FieldSelector != "" || req.DisableCache {
		client, _, _ := k.connected()
		list, err := client.Resource(gvr).Namespace(req.Namespace).List(ctx, metav1.ListOptions{LabelSelector: req.LabelSelector, FieldSelector: req.FieldSelector})
		if err != nil {
			return nil, err
		}
		return json.Marshal(list)
	}
	selector, err := labels.Parse(req.LabelSelector)
	if err != nil {
		return nil, fmt.Errorf("label_selector: %w", err)
	}
	informer, err := k.informer(ctx, gvr)
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
		b, err := k.encode(u)
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

// encode returns a cached object's JSON, encoding it only when its resourceVersion changed.
// Objects are immutable in the informer's store; entries go when the object is deleted.
func (k *KubernetesHost) encode(obj any) ([]byte, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok || u.GetUID() == "" {
		return json.Marshal(obj)
	}
	uid, rv := u.GetUID(), u.GetResourceVersion()
	if e, ok := k.encoded.Load(uid); ok && e.(encodedObject).resourceVersion == rv {
		return e.(encodedObject).json, nil
	}
	b, err := json.Marshal(u)
	if err != nil {
		return nil, err
	}
	k.encoded.Store(uid, encodedObject{rv, b})
	return b, nil
}

// forget drops a deleted object's cached JSON.
func (k *KubernetesHost) forget(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if u, ok := obj.(*unstructured.Unstructured); ok {
		k.encoded.Delete(u.GetUID())
	}
}

// informer returns the synced informer of gvr, starting it on first use.
func (k *KubernetesHost) informer(ctx context.Context, gvr schema.GroupVersionResource) (cache.SharedIndexInformer, error) {
	k.mu.Lock()
	informer, ok := k.informers[gvr]
	if !ok {
		if k.factory == nil {
			k.factory = dynamicinformer.NewDynamicSharedInformerFactory(k.client, 0)
		}
		informer = k.factory.ForResource(gvr).Informer()
		if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: k.forget}); err != nil {
			k.mu.Unlock()
			return nil, err
		}
		k.informers[gvr] = informer
		k.factory.Start(k.stop)
	}
	k.mu.Unlock()
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
