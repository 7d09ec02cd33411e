package kubewarden

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/wasmkube/wasmkube/wasm/internal/wasmtest"
)

// TestUngranted: what a policy's metadata asks for beyond its grants.
func TestUngranted(t *testing.T) {
	ingress := ContextAwareResource{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"}
	secret := ContextAwareResource{APIVersion: "v1", Kind: "Secret"}
	cases := []struct {
		name    string
		asks    Metadata
		grants  PolicyGrants
		missing PolicyGrants
	}{
		{"asks nothing", Metadata{}, PolicyGrants{}, PolicyGrants{}},
		{"asks a kind, granted nothing", Metadata{ContextAwareResources: []ContextAwareResource{ingress}}, PolicyGrants{},
			PolicyGrants{ContextAwareResources: []ContextAwareResource{ingress}}},
		{"asks a kind, granted it", Metadata{ContextAwareResources: []ContextAwareResource{ingress}},
			PolicyGrants{ContextAwareResources: []ContextAwareResource{ingress}}, PolicyGrants{}},
		{"asks two kinds, granted one", Metadata{ContextAwareResources: []ContextAwareResource{ingress, secret}},
			PolicyGrants{ContextAwareResources: []ContextAwareResource{ingress}}, PolicyGrants{ContextAwareResources: []ContextAwareResource{secret}}},
		{"another version is another grant", Metadata{ContextAwareResources: []ContextAwareResource{{APIVersion: "networking.k8s.io/v1beta1", Kind: "Ingress"}}},
			PolicyGrants{ContextAwareResources: []ContextAwareResource{ingress}}, PolicyGrants{ContextAwareResources: []ContextAwareResource{{APIVersion: "networking.k8s.io/v1beta1", Kind: "Ingress"}}}},
		{"asks everything", Metadata{HostCapabilities: []string{"*"}}, PolicyGrants{HostCapabilities: []string{"net/*", "kubernetes/*"}},
			PolicyGrants{HostCapabilities: []string{"*"}}},
		{"asks everything, granted everything", Metadata{HostCapabilities: []string{"*"}}, PolicyGrants{HostCapabilities: []string{"*"}}, PolicyGrants{}},
		{"a namespace covers its operations", Metadata{HostCapabilities: []string{"net/v1/dns_lookup_host", "kubernetes/can_i"}},
			PolicyGrants{HostCapabilities: []string{"net/*", "kubernetes/*"}}, PolicyGrants{}},
		{"reads are granted by kinds", Metadata{HostCapabilities: []string{"kubernetes/list_resources_all", "kubernetes/get_resource", "tracing/log"}},
			PolicyGrants{ContextAwareResources: []ContextAwareResource{ingress}}, PolicyGrants{}},
		{"kubernetes/* asks for can_i too", Metadata{HostCapabilities: []string{"kubernetes/*"}},
			PolicyGrants{ContextAwareResources: []ContextAwareResource{ingress}}, PolicyGrants{HostCapabilities: []string{"kubernetes/*"}}},
		{"a narrower grant does not cover a wider ask", Metadata{HostCapabilities: []string{"crypto/*"}},
			PolicyGrants{HostCapabilities: []string{"net/v1/dns_lookup_host"}}, PolicyGrants{HostCapabilities: []string{"crypto/*"}}},
		{"an unknown capability, covered by a pattern", Metadata{HostCapabilities: []string{"net/v2/future"}},
			PolicyGrants{HostCapabilities: []string{"net/*"}}, PolicyGrants{}},
		{"an unknown capability, not granted", Metadata{HostCapabilities: []string{"net/v2/future"}},
			PolicyGrants{HostCapabilities: []string{"crypto/*"}}, PolicyGrants{HostCapabilities: []string{"net/v2/future"}}},
	}
	for _, c := range cases {
		got := c.asks.Ungranted(c.grants)
		if !slices.Equal(got.ContextAwareResources, c.missing.ContextAwareResources) || !slices.Equal(got.HostCapabilities, c.missing.HostCapabilities) {
			t.Errorf("%s: missing %+v, want %+v", c.name, got, c.missing)
		}
	}
}

func TestCheckCapabilityPattern(t *testing.T) {
	for _, ok := range []string{"*", "net/*", "kubernetes/can_i", "crypto/v1/*", "oci/*", "kubernetes/list_*"} {
		if err := CheckCapabilityPattern(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"net/v1/dns_lookup", "dns/*", "kubernetes", ""} {
		if err := CheckCapabilityPattern(bad); err == nil || !strings.Contains(err.Error(), "net/v1/dns_lookup_host") {
			t.Errorf("%q: %v, want an error listing the known capabilities", bad, err)
		}
	}
}

// TestHostCallGating: a policy's host calls are gated by its grants, whatever its metadata
// asks for: tracing always; Kubernetes reads of granted kinds; can_i, net and crypto only
// when a granted pattern matches; oci never.
func TestHostCallGating(t *testing.T) {
	asksAll := Metadata{HostCapabilities: []string{"*"}, ContextAwareResources: []ContextAwareResource{{APIVersion: "v1", Kind: "Secret"}}}
	mod := wasmtest.Named(t, "p")
	call := func(g PolicyGrants, namespace, operation, payload string) error {
		p := &Policy{mod: mod, meta: asksAll, grants: g, logger: slog.New(slog.DiscardHandler)}
		_, err := p.hostCall(context.Background(), "kubewarden", namespace, operation, []byte(payload))
		return err
	}
	secret := `{"api_version":"v1","kind":"Secret","name":"s","namespace":"default"}`
	nothing := PolicyGrants{}
	if err := call(nothing, "tracing", "log", `{"level":"info","message":"hi"}`); err != nil {
		t.Errorf("tracing/log without grants: %v", err)
	}
	for _, c := range []struct{ namespace, operation, payload, want string }{
		{"kubernetes", "get_resource", secret, "host capability kubernetes/get_resource is not granted to policy p"},
		{"kubernetes", "can_i", `{}`, "host capability kubernetes/can_i is not granted"},
		{"net", "v1/dns_lookup_host", `"localhost"`, "host capability net/v1/dns_lookup_host is not granted"},
		{"crypto", "v1/is_certificate_trusted", `{}`, "host capability crypto/v1/is_certificate_trusted is not granted"},
	} {
		if err := call(nothing, c.namespace, c.operation, c.payload); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s/%s asked for in the metadata, not granted: %v, want %q", c.namespace, c.operation, err, c.want)
		}
	}
	ingresses := PolicyGrants{ContextAwareResources: []ContextAwareResource{{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"}}}
	if err := call(ingresses, "kubernetes", "get_resource", secret); err == nil || !strings.Contains(err.Error(), "cannot access v1 Secret: not granted") {
		t.Errorf("a kind not granted: %v", err)
	}
	if err := call(ingresses, "kubernetes", "can_i", `{}`); err == nil || !strings.Contains(err.Error(), "kubernetes/can_i is not granted") {
		t.Errorf("can_i with reads granted only: %v", err)
	}
	granted := PolicyGrants{ContextAwareResources: asksAll.ContextAwareResources, HostCapabilities: []string{"net/*", "kubernetes/can_i", "oci/*"}}
	if err := call(granted, "kubernetes", "get_resource", secret); err == nil || !strings.Contains(err.Error(), "no cluster") {
		t.Errorf("a granted read offline reaches the (missing) cluster: %v", err)
	}
	if err := call(granted, "net", "v1/dns_lookup_host", `"localhost"`); err != nil {
		t.Errorf("granted DNS lookup of localhost: %v", err)
	}
	if err := call(granted, "oci", "v1/verify", `{}`); err == nil || !strings.Contains(err.Error(), "offline") {
		t.Errorf("oci, even granted: %v", err)
	}
}
