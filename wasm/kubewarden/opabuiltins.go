package kubewarden

// reviewedBuiltins are the builtins of OPA v1.22.3 whose Go implementations a policy may call on
// the host, an allowlist: each was considered for what it reaches (files, network, environment)
// and for how far its output can outgrow its arguments; those that can are guarded
// (opaguards.go). Left out: refusedBuiltins, and those OPA compiles into every module it makes
// whose host versions amplify (bits.lsh, numbers.range, replace, strings.replace_n, walk): only
// a module OPA did not make asks the host for them. A builtin a later OPA adds is refused at load
// until it is reviewed; TestEveryBuiltinIsReviewed fails when OPA's list and these part.
var reviewedBuiltins = toSet(
	"abs", "and", "ceil", "concat", "contains", "count", "div", "endswith", "equal", "floor",
	"format_int", "gt", "gte", "indexof", "indexof_n", "intersection", "is_array", "is_boolean",
	"is_null", "is_number", "is_object", "is_set", "is_string", "lower", "lt", "lte", "max",
	"min", "minus", "mul", "neq", "or", "plus", "product", "rem", "round", "sort",
	"split", "sprintf", "startswith", "substring", "sum", "to_number", "trace", "trim",
	"trim_left", "trim_prefix", "trim_right", "trim_space", "trim_suffix", "type_name", "union",
	"upper",
	"array.concat", "array.flatten", "array.reverse", "array.slice",
	"base64.decode", "base64.encode", "base64.is_valid",
	"base64url.decode", "base64url.encode", "base64url.encode_no_pad",
	"bits.and", "bits.negate", "bits.or", "bits.rsh", "bits.xor",
	"crypto.hmac.equal", "crypto.hmac.md5", "crypto.hmac.sha1", "crypto.hmac.sha256",
	"crypto.hmac.sha512", "crypto.md5", "crypto.parse_private_keys", "crypto.sha1",
	"crypto.sha256", "crypto.x509.parse_and_verify_certificates",
	"crypto.x509.parse_and_verify_certificates_with_options",
	"crypto.x509.parse_certificate_request", "crypto.x509.parse_certificates",
	"crypto.x509.parse_keypair", "crypto.x509.parse_rsa_private_key",
	"glob.match", "glob.quote_meta",
	"graph.reachable",
	"graphql.is_valid", "graphql.parse", "graphql.parse_and_verify", "graphql.parse_query",
	"graphql.parse_schema", "graphql.schema_is_valid",
	"hex.decode", "hex.encode",
	"internal.member_2", "internal.member_3", "internal.print", "internal.template_string",
	"io.jwt.decode", "io.jwt.decode_verify", "io.jwt.encode_sign", "io.jwt.encode_sign_raw",
	"io.jwt.verify_eddsa", "io.jwt.verify_es256", "io.jwt.verify_es384", "io.jwt.verify_es512",
	"io.jwt.verify_hs256", "io.jwt.verify_hs384", "io.jwt.verify_hs512", "io.jwt.verify_ps256",
	"io.jwt.verify_ps384", "io.jwt.verify_ps512", "io.jwt.verify_rs256", "io.jwt.verify_rs384",
	"io.jwt.verify_rs512",
	"json.filter", "json.is_valid", "json.marshal", "json.marshal_with_options", "json.patch",
	"json.remove", "json.unmarshal",
	"net.cidr_contains", "net.cidr_contains_matches", "net.cidr_expand", "net.cidr_intersects",
	"net.cidr_is_valid", "net.cidr_merge",
	"numbers.range_step",
	"object.filter", "object.get", "object.keys", "object.remove", "object.subset",
	"object.union", "object.union_n",
	"providers.aws.sign_req",
	"rand.intn",
	"regex.find_all_string_submatch_n", "regex.find_n", "regex.globs_match", "regex.is_valid",
	"regex.match", "regex.replace", "regex.split", "regex.template_match",
	"rego.metadata.chain", "rego.metadata.rule",
	"semver.compare", "semver.is_valid",
	"strings.any_prefix_match", "strings.any_suffix_match", "strings.count",
	"strings.reverse", "strings.split_n",
	"time.add_date", "time.clock", "time.date", "time.diff", "time.format", "time.now_ns",
	"time.parse_duration_ns", "time.parse_ns", "time.parse_rfc3339_ns", "time.weekday",
	"units.parse", "units.parse_bytes",
	"uri.is_valid", "uri.parse",
	"urlquery.decode", "urlquery.decode_object", "urlquery.encode", "urlquery.encode_object",
	"uuid.parse", "uuid.rfc4122",
	"yaml.is_valid", "yaml.marshal", "yaml.unmarshal",
)

func toSet(names ...string) map[string]bool {
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set
}
