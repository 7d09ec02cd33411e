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
	r := &Request{Raw: raw}
	raw.Fields(func(k string, v guest.JSON) bool {
		switch k {
		case "uid":
			r.UID = v.String()
		case "kind":
			r.Kind = GroupVersionKind{v.Get("group").String(), v.Get("version").String(), v.Get("kind").String()}
		case "resource":
			r.Resource = GroupVersionResource{v.Get("group").String(), v.Get("version").String(), v.Get("resource").String()}
		case "subResource":
			r.SubResource = v.String()
		case "name":
			r.Name = v.String()
		case "namespace":
			r.Namespace = v.String()
		case "operation":
			r.Operation = v.String()
		case "userInfo":
			r.UserInfo = UserInfo{Username: v.Get("username").String(), UID: v.Get("uid").String(),
				Groups: v.Get("groups").Strings(), Extra: v.Get("extra").StringsMap()}
		case "object":
			r.Object = v
		case "oldObject":
			r.OldObject = v
		case "dryRun":
			r.DryRun = v.Bool()
		case "options":
			r.Options = v
		}
		return true
	})
	return r
}
