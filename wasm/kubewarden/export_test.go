package kubewarden

// SetOneShot makes a Rego policy evaluate with ABI 1.2's opa_eval (true) or ABI 1.1's
// opa_eval_ctx_* sequence (false), so tests run both paths on one module.
func SetOneShot(p *Policy, oneShot bool) { p.rego.oneShot = oneShot }

// OneShot says the policy evaluates with opa_eval.
func OneShot(p *Policy) bool { return p.rego.oneShot }
