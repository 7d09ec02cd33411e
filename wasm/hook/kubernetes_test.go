package hook

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
)

// TestKubernetesHostCanI answers can_i with the authorizer it is given (here the API server's
// privileged-groups authorizer) and refuses calls before it is connected.
func TestKubernetesHostCanI(t *testing.T) {
	k := NewKubernetesHost()
	payload := func(group string) []byte {
		return []byte(`{"subject_access_review":{"user":"u","groups":["` + group + `"],"resource_attributes":{"namespace":"default","verb":"create","resource":"pods"}},"disable_cache":false}`)
	}
	if _, err := k.Kubernetes(context.Background(), "can_i", payload("g")); err == nil || !strings.Contains(err.Error(), "still starting") {
		t.Errorf("before connect: %v", err)
	}
	if _, err := k.Kubernetes(context.Background(), "get_resource", []byte(`{"api_version":"v1","kind":"Pod","name":"p"}`)); err == nil || !strings.Contains(err.Error(), "still starting") {
		t.Errorf("get before connect: %v", err)
	}
	k.Connect(nil, nil, authorizerfactory.NewPrivilegedGroups("admins"), nil)
	for group, want := range map[string]string{"admins": `"allowed":true`, "others": `"allowed":false`} {
		out, err := k.Kubernetes(context.Background(), "can_i", payload(group))
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("%s: %s %v, want %s", group, out, err, want)
		}
	}
	if _, err := k.Kubernetes(context.Background(), "delete_everything", []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "unknown operation delete_everything") {
		t.Errorf("unknown operation: %v", err)
	}
}
