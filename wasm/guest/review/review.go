// Package review reads admission.k8s.io/v1 AdmissionRequests in a module, without
// encoding/json: for modules of the original ABI (package admission) and Kubewarden policies
// (package kubewarden) alike. It exports nothing to the host.
package review

import "github.com/wasmkube/wasmkube/wasm/guest"

// GroupVersionKind names a kind.
type GroupVersionKind struct{ Group, Version, Kind string }

// GroupVersionResource names a resource.
type GroupVersionResource struct{ Group, Version, Resource string }

// UserInfo is who sent the request.
type UserInfo struct {
	Username string
	UID      string
	Groups   []string
	Extra    map[string][]string
}

// Request is an admission.k8s.io/v1 AdmissionRequest. Objects stay raw JSON: query them with
// Get (a key path) or decode them yourself.
type Request struct {
	UID         string
	Kind        GroupVersionKind
	Resource    GroupVersionResource
	SubResource string
	Name        string
	Namespace   string
	// Operation is CREATE, UPDATE, DELETE or CONNECT.
	Operation string
	UserInfo  UserInfo
	Object    guest.JSON
	OldObject guest.JSON
	DryRun    bool
	Options   guest.JSON
	// Raw is the whole request.
	Raw guest.JSON
}

// Parse reads a request in one pass over its fields.
func Parse(raw guest.JSON) *Request {
	var v [len(requestFields)]guest.JSON
	raw.Pick(requestFields[:], v[:])
	r := &Request{Raw: raw, UID: v[0].String(), SubResource: v[3].String(), Name: v[4].String(),
		Namespace: v[5].String(), Operation: v[6].String(), Object: v[8], OldObject: v[9],
		DryRun: v[10].Bool(), Options: v[11]}
	var gvk [3]guest.JSON
	v[1].Pick(gvkFields[:], gvk[:])
	r.Kind = GroupVersionKind{gvk[0].String(), gvk[1].String(), gvk[2].String()}
	v[2].Pick(gvrFields[:], gvk[:])
	r.Resource = GroupVersionResource{gvk[0].String(), gvk[1].String(), gvk[2].String()}
	var user [4]guest.JSON
	v[7].Pick(userFields[:], user[:])
	r.UserInfo = UserInfo{Username: user[0].String(), UID: user[1].String(), Groups: user[2].Strings(), Extra: user[3].StringsMap()}
	return r
}

// The fields Parse reads, in the order of its arrays.
var (
	requestFields = [...]string{"uid", "kind", "resource", "subResource", "name", "namespace",
		"operation", "userInfo", "object", "oldObject", "dryRun", "options"}
	gvkFields  = [...]string{"group", "version", "kind"}
	gvrFields  = [...]string{"group", "version", "resource"}
	userFields = [...]string{"username", "uid", "groups", "extra"}
)
