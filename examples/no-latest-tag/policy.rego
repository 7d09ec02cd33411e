# An OPA-style policy (Kubewarden executionMode opa): containers of Pods and of the workloads
# that make Pods must name an image tag other than latest, or a digest; images from registries in
# data.allowedRegistries (the policy's settings) only, when it is set. Compiled with
# `make examples-rego`.
package kubernetes.admission

# METADATA
# entrypoint: true
main := {
	"apiVersion": "admission.k8s.io/v1",
	"kind": "AdmissionReview",
	"response": response,
}

default response := {"allowed": true}

response := {
	"allowed": false,
	"status": {"code": 400, "message": concat("; ", sort(deny))},
} if count(deny) > 0

deny contains msg if {
	some c in containers
	latest(c.image)
	msg := sprintf("container %s: image %s has no tag or the tag latest; name a version or a digest", [c.name, c.image])
}

deny contains msg if {
	some c in containers
	count(data.allowedRegistries) > 0
	not allowed_registry(c.image)
	msg := sprintf("container %s: image %s is not from an allowed registry (%s)", [c.name, c.image, concat(", ", data.allowedRegistries)])
}

containers contains c if some c in pod_spec.containers

containers contains c if some c in pod_spec.initContainers

pod_spec := input.request.object.spec if input.request.kind.kind == "Pod"

pod_spec := input.request.object.spec.template.spec if input.request.kind.kind in {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"}

pod_spec := input.request.object.spec.jobTemplate.spec.template.spec if input.request.kind.kind == "CronJob"

latest(image) if endswith(image, ":latest")

latest(image) if {
	not contains(image, "@")
	last := regex.split("/", image)[count(regex.split("/", image)) - 1]
	not contains(last, ":")
}

allowed_registry(image) if {
	some r in data.allowedRegistries
	startswith(image, concat("", [r, "/"]))
}
