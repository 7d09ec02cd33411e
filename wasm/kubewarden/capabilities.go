package kubewarden

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// PolicyGrants are what an operator gives a Kubewarden policy beyond its input and output. A
// policy's metadata says what it asks for (Metadata.ContextAwareResources and HostCapabilities);
// the grants say what it gets. The zero value grants nothing: no Kubernetes reads, no can_i, no
// DNS, no certificate checks (tracing/log is always allowed).
type PolicyGrants struct {
	// ContextAwareResources are the kinds the policy may read (get_resource,
	// list_resources_by_namespace, list_resources_all), each at exactly this apiVersion.
	ContextAwareResources []ContextAwareResource
	// HostCapabilities are the other host calls the policy may make, as patterns over
	// "namespace/operation" names (HostCapabilityNames): an exact name, "*", "namespace/*" or a
	// path.Match glob.
	HostCapabilities []string
}

// Empty reports whether g grants nothing.
func (g PolicyGrants) Empty() bool {
	return len(g.ContextAwareResources) == 0 && len(g.HostCapabilities) == 0
}

// HostCapabilityNames are the host calls of Kubewarden's "kubewarden" binding, as
// "namespace/operation". tracing/log is always allowed; oci calls are refused whatever is
// granted (wasmkube runs offline).
var HostCapabilityNames = []string{
	"tracing/log",
	"kubernetes/get_resource",
	"kubernetes/list_resources_by_namespace",
	"kubernetes/list_resources_all",
	"kubernetes/can_i",
	"net/v1/dns_lookup_host",
	"crypto/v1/is_certificate_trusted",
	"oci/v1/verify",
	"oci/v2/verify",
	"oci/v1/manifest_digest",
	"oci/v1/oci_manifest",
	"oci/v1/oci_manifest_config",
}

// kubernetesReads are the host calls granted by ContextAwareResources (for the kinds listed).
var kubernetesReads = []string{
	"kubernetes/get_resource",
	"kubernetes/list_resources_by_namespace",
	"kubernetes/list_resources_all",
}

// CapabilityMatches reports whether the capability pattern covers the host call capability
// ("namespace/operation"): the same name, "*", "namespace/*" (any operation of the namespace,
// including v1/... ones) or a path.Match glob.
func CapabilityMatches(pattern, capability string) bool {
	if pattern == "*" || pattern == capability {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "/*"); ok && strings.HasPrefix(capability, prefix+"/") {
		return true
	}
	ok, _ := path.Match(pattern, capability)
	return ok
}

// CheckCapabilityPattern returns an error when pattern names no known host call (a typo would
// otherwise grant nothing, silently).
func CheckCapabilityPattern(pattern string) error {
	if slices.ContainsFunc(HostCapabilityNames, func(c string) bool { return CapabilityMatches(pattern, c) }) {
		return nil
	}
	return fmt.Errorf("%q matches no host capability; known: %s (or a namespace/* pattern, or *)", pattern, strings.Join(HostCapabilityNames, ", "))
}

// grantsCapability reports whether g allows the host call capability: tracing/log always; a
// granted pattern that matches it; and Kubernetes reads when some kind is granted (the kind itself
// is checked per call).
func (g PolicyGrants) grantsCapability(capability string) bool {
	if capability == "tracing/log" || slices.ContainsFunc(g.HostCapabilities, func(p string) bool { return CapabilityMatches(p, capability) }) {
		return true
	}
	return slices.Contains(kubernetesReads, capability) && len(g.ContextAwareResources) > 0
}

// grantsResource reports whether g allows reading apiVersion/kind.
func (g PolicyGrants) grantsResource(apiVersion, kind string) bool {
	return slices.Contains(g.ContextAwareResources, ContextAwareResource{APIVersion: apiVersion, Kind: kind})
}

// coversPattern reports whether g grants everything the asked pattern names: every known host
// call the pattern matches. A pattern that names no known call is covered only by a granted
// pattern that matches it as a name.
func (g PolicyGrants) coversPattern(asked string) bool {
	matched := false
	for _, c := range HostCapabilityNames {
		if CapabilityMatches(asked, c) {
			matched = true
			if !g.grantsCapability(c) {
				return false
			}
		}
	}
	return matched || slices.ContainsFunc(g.HostCapabilities, func(p string) bool { return CapabilityMatches(p, asked) })
}

// Ungranted returns what the metadata asks for that g does not grant: the context-aware
// resources not granted, and the host capabilities whose calls are not all granted. Both empty:
// the policy gets everything it asks for.
func (md *Metadata) Ungranted(g PolicyGrants) PolicyGrants {
	var missing PolicyGrants
	for _, r := range md.ContextAwareResources {
		if !g.grantsResource(r.APIVersion, r.Kind) && !slices.Contains(missing.ContextAwareResources, r) {
			missing.ContextAwareResources = append(missing.ContextAwareResources, r)
		}
	}
	for _, c := range md.HostCapabilities {
		if !g.coversPattern(c) && !slices.Contains(missing.HostCapabilities, c) {
			missing.HostCapabilities = append(missing.HostCapabilities, c)
		}
	}
	return missing
}
