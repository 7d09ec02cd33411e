package kubewarden

// SetOneShot makes a Rego policy evaluate with ABI 1.2's opa_eval (true) or ABI 1.1's
// opa_eval_ctx_* sequence (false), so tests run both paths on one module.
func SetOneShot(p *Policy, oneShot bool) { p.rego.oneShot = oneShot }

// OneShot says the policy evaluates with opa_eval.
func OneShot(p *Policy) bool { return p.rego.oneShot }

// BuiltinReview says whether the host may run builtin (reviewed) and whether it refuses it with
// a reason (refused).
func BuiltinReview(builtin string) (reviewed, refused bool) {
	_, refused = refusedBuiltins[builtin]
	return reviewedBuiltins[builtin], refused
}

// ReviewedBuiltins lists the allowlist.
func ReviewedBuiltins() []string {
	names := make([]string, 0, len(reviewedBuiltins))
	for n := range reviewedBuiltins {
		names = append(names, n)
	}
	return names
}
