// Command workload-policy is a settings-driven validating module for Pods and the workloads that
// template them (Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs): it requires
// labels and restricts images to allowed registries, warns about images without a pinned tag,
// and records how many images it checked in an audit annotation.
//
// Settings:
//
//	{"requiredLabels": ["team"], "allowedRegistries": ["registry.k8s.io/", "ghcr.io/acme/"]}
package main

import (
	"strconv"
	"strings"

	"github.com/wasmkube/wasmkube/wasm/guest"
	"github.com/wasmkube/wasmkube/wasm/guest/admission"
)

func main() {}

func init() { admission.Handle(decodeSettings, validate) }

// Settings is the module's configuration.
type Settings struct {
	RequiredLabels    []string
	AllowedRegistries []string
}

// decodeSettings reads the settings with the SDK's JSON reader; it needs no encoding/json.
func decodeSettings(raw guest.JSON) (Settings, error) {
	return Settings{
		RequiredLabels:    raw.Get("requiredLabels").Strings(),
		AllowedRegistries: raw.Get("allowedRegistries").Strings(),
	}, nil
}

// podSpecPath is where each kind keeps its pod spec.
var podSpecPath = map[string][]string{
	"Pod":         {"spec"},
	"Deployment":  {"spec", "template", "spec"},
	"StatefulSet": {"spec", "template", "spec"},
	"DaemonSet":   {"spec", "template", "spec"},
	"ReplicaSet":  {"spec", "template", "spec"},
	"Job":         {"spec", "template", "spec"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template", "spec"},
}

func validate(r *admission.Request, s Settings) admission.Response {
	path, ok := podSpecPath[r.Kind.Kind]
	if !ok || !r.Object.Exists() || r.Operation == "DELETE" {
		return admission.Accept()
	}
	labels := r.Object.Get("metadata", "labels")
	var missing []string
	for _, l := range s.RequiredLabels {
		if !labels.Get(l).Exists() {
			missing = append(missing, l)
		}
	}
	if len(missing) > 0 {
		// A Pod a ReplicaSet or Job creates has no name yet (the server generates it).
		who := r.Kind.Kind
		if r.Name != "" {
			who += " " + r.Name
		}
		return admission.Reject(who+" lacks required labels: "+strings.Join(missing, ", "), 400)
	}

	spec := r.Object.Get(path...)
	var images []string
	for _, list := range []string{"initContainers", "containers", "ephemeralContainers"} {
		spec.Get(list).Elements(func(_ int, c guest.JSON) bool {
			images = append(images, c.Get("image").String())
			return true
		})
	}
	var warnings []string
	for _, img := range images {
		if !allowed(img, s.AllowedRegistries) {
			return admission.Reject("image "+img+" is not from an allowed registry ("+strings.Join(s.AllowedRegistries, ", ")+")", 403)
		}
		if !pinned(img) {
			warnings = append(warnings, "image "+img+" has no pinned tag or digest; pin it for reproducible rollouts")
		}
	}
	return admission.Accept().
		WithWarnings(warnings...).
		WithAuditAnnotation("images-checked", strconv.Itoa(len(images)))
}

func allowed(image string, registries []string) bool {
	if len(registries) == 0 {
		return true
	}
	for _, r := range registries {
		if strings.HasPrefix(image, r) {
			return true
		}
	}
	return false
}

// pinned reports whether an image names a digest or a tag other than latest.
func pinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	slash := strings.LastIndexByte(image, '/')
	colon := strings.LastIndexByte(image, ':')
	return colon > slash && image[colon+1:] != "latest"
}
