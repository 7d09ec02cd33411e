package hook

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
)

// grantedReader is a dynamic client limited to reading granted kinds: get (without
// subresources), list and watch of the resources the granted kinds map to; every other verb,
// and every verb on another resource, is refused with a Forbidden error before the API server
// is asked. A policy's reads and its informers go through it, so a kind that was not granted
// cannot be read whatever the code above it does.
type grantedReader struct {
	base   dynamic.Interface
	mapper meta.RESTMapper
	// policy names the reader in errors.
	policy string
	// kinds are the granted kinds, each at its version.
	kinds []schema.GroupVersionKind
}

var _ dynamic.Interface = (*grantedReader)(nil)

// newGrantedReader limits base to reading kinds (resolved to resources with mapper).
func newGrantedReader(base dynamic.Interface, mapper meta.RESTMapper, policy string, kinds []schema.GroupVersionKind) *grantedReader {
	return &grantedReader{base: base, mapper: mapper, policy: policy, kinds: slices.Clone(kinds)}
}

// check returns nil when gvr is the resource of a granted kind, a Forbidden error otherwise.
// Kinds are resolved on every check, so a granted custom resource works once it is installed.
func (r *grantedReader) check(gvr schema.GroupVersionResource) error {
	for _, gvk := range r.kinds {
		m, err := r.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil && m.Resource == gvr {
			return nil
		}
	}
	return apierrors.NewForbidden(gvr.GroupResource(), "",
		fmt.Errorf("policy %s may not read %s: not granted (grants.contextAwareResources of its profile entry)", r.policy, gvr))
}

// Resource implements dynamic.Interface.
func (r *grantedReader) Resource(gvr schema.GroupVersionResource) dynamic.NamespaceableResourceInterface {
	return &grantedResource{r: r, gvr: gvr}
}

// grantedResource is one resource of a grantedReader, in one namespace (or all).
type grantedResource struct {
	r         *grantedReader
	gvr       schema.GroupVersionResource
	namespace string
}

func (g *grantedResource) Namespace(ns string) dynamic.ResourceInterface {
	return &grantedResource{r: g.r, gvr: g.gvr, namespace: ns}
}

// client returns the base client for the resource when it may be read.
func (g *grantedResource) client() (dynamic.ResourceInterface, error) {
	if err := g.r.check(g.gvr); err != nil {
		return nil, err
	}
	return g.r.base.Resource(g.gvr).Namespace(g.namespace), nil
}

// refuse is the answer to every verb but get, list and watch.
func (g *grantedResource) refuse(verb string) error {
	return apierrors.NewForbidden(g.gvr.GroupResource(), "",
		fmt.Errorf("policy %s may only read (get, list, watch) what it was granted; %s is refused", g.r.policy, verb))
}

func (g *grantedResource) Get(ctx context.Context, name string, opts metav1.GetOptions, subresources ...string) (*unstructured.Unstructured, error) {
	if len(subresources) > 0 {
		return nil, g.refuse("get of a subresource")
	}
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	return c.Get(ctx, name, opts)
}

func (g *grantedResource) List(ctx context.Context, opts metav1.ListOptions) (*unstructured.UnstructuredList, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	return c.List(ctx, opts)
}

func (g *grantedResource) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	return c.Watch(ctx, opts)
}

func (g *grantedResource) Create(context.Context, *unstructured.Unstructured, metav1.CreateOptions, ...string) (*unstructured.Unstructured, error) {
	return nil, g.refuse("create")
}

func (g *grantedResource) Update(context.Context, *unstructured.Unstructured, metav1.UpdateOptions, ...string) (*unstructured.Unstructured, error) {
	return nil, g.refuse("update")
}

func (g *grantedResource) UpdateStatus(context.Context, *unstructured.Unstructured, metav1.UpdateOptions) (*unstructured.Unstructured, error) {
	return nil, g.refuse("update")
}

func (g *grantedResource) Delete(context.Context, string, metav1.DeleteOptions, ...string) error {
	return g.refuse("delete")
}

func (g *grantedResource) DeleteCollection(context.Context, metav1.DeleteOptions, metav1.ListOptions) error {
	return g.refuse("deletecollection")
}

func (g *grantedResource) Patch(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (*unstructured.Unstructured, error) {
	return nil, g.refuse("patch")
}

func (g *grantedResource) Apply(context.Context, string, *unstructured.Unstructured, metav1.ApplyOptions, ...string) (*unstructured.Unstructured, error) {
	return nil, g.refuse("apply")
}

func (g *grantedResource) ApplyStatus(context.Context, string, *unstructured.Unstructured, metav1.ApplyOptions) (*unstructured.Unstructured, error) {
	return nil, g.refuse("apply")
}
