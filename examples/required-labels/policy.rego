# A Gatekeeper-style policy (Kubewarden executionMode gatekeeper): objects must carry every
# label in the parameters' `labels`, and each label that parameters' `allowedValues` lists must
# have one of its values. Compiled with `make examples-rego`.
package policy

# METADATA
# entrypoint: true
violation contains {"msg": msg} if {
	some label in input.parameters.labels
	not input.review.object.metadata.labels[label]
	msg := sprintf("%s %s has no label %q", [input.review.kind.kind, object_name, label])
}

violation contains {"msg": msg} if {
	some label, allowed in input.parameters.allowedValues
	value := input.review.object.metadata.labels[label]
	not value in allowed
	msg := sprintf("%s %s: label %s=%s is not one of %v", [input.review.kind.kind, object_name, label, value, allowed])
}

# object_name is the object's name, or its generateName for a name the server picks.
default object_name := "(unnamed)"

object_name := input.review.object.metadata.name

object_name := input.review.object.metadata.generateName if not input.review.object.metadata.name
