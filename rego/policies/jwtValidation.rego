# METADATA
# title: jwtValidation
# description: >-
#   Validates a bearer JWT: the signature (io.jwt.verify_<alg> for the token's
#   alg, which must be listed in algorithms; "none" is never accepted), then
#   exp/nbf (with leeway), iss and aud. Key material comes from the metadata
#   (jwks, public_key_pem, secret) or, when the metadata has none, from
#   data.policy_data.jwtValidation (jwks, public_key_pem, secret). A valid
#   token sets the chain state "claims" (the payload) and "user" (sub).
# custom:
#   version: 1.0.0
#   prepare: true
#   phases: [request]
#   tier: rbac
#   schema:
#     type: object
#     additionalProperties: false
#     properties:
#       issuer:
#         type: string
#         minLength: 1
#       audience:
#         type: string
#         minLength: 1
#       algorithms:
#         type: array
#         minItems: 1
#         items:
#           type: string
#           enum: [RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, HS256, HS384, HS512]
#         default: [RS256, ES256]
#       leeway_seconds:
#         type: number
#         minimum: 0
#         default: 60
#       header_name:
#         type: string
#         minLength: 1
#         default: Authorization
#       jwks:
#         type: object
#         description: JWK set used for RS*/PS*/ES* tokens
#         required: [keys]
#         properties:
#           keys:
#             type: array
#             items:
#               type: object
#               required: [kty]
#               properties:
#                 kty: {type: string}
#       public_key_pem:
#         type: string
#         pattern: "-----BEGIN "
#         description: PEM public key or certificate for RS*/PS*/ES* tokens
#       secret:
#         type: string
#         minLength: 1
#         description: shared secret for HS* tokens
package policies.jwtValidation

import rego.v1

# result(ctx, md) is run(ctx, prepare(md)) and total: every branch of run
# ends in a result object, and its final else turns anything unforeseen into
# POLICY_ERROR. Each step only runs once the previous ones have passed, so
# builtins only ever see well-typed, well-formed arguments; each value
# (header, token, JWT header, alg, keys, payload) is computed once and passed
# to the next step.
result(ctx, md) := run(ctx, prepare(md))

# What run needs from the metadata md and the policy data, which are the
# same for every request of a route: the chain compiler evaluates it in a
# rule of its own, computed once per program and data (custom.prepare in
# the METADATA above). "md" is the metadata; "fast", for metadata of the
# schema's shape and well-formed data (so none of the error messages of
# _md_error and _data_error can apply), is the digest the usual request is
# decided from.
prepare(md) := {"md": md, "fast": c} if {
	is_object(md)
	count(object.remove(md, _known_fields)) == 0
	issuer := object.get(md, "issuer", "-")
	is_string(issuer)
	issuer != ""
	audience := object.get(md, "audience", "-")
	is_string(audience)
	audience != ""
	algorithms := object.get(md, "algorithms", ["RS256", "ES256"])
	is_array(algorithms)
	count(algorithms) > 0
	every alg in algorithms {
		alg in _supported_algorithms
	}
	leeway := object.get(md, "leeway_seconds", 60)
	is_number(leeway)
	leeway >= 0
	name := object.get(md, "header_name", "Authorization")
	is_string(name)
	name != ""
	_key_material_ok(md)
	not _data_error
	c := _digest(md)
} else := {"md": md}

# The values of valid metadata md that requests are checked against: the
# header (its name, and its lower-case name, under which a context carries
# it), the allowed algorithms, the leeway and the keys for tokens of each
# supported algorithm (the metadata's key material when it has any, else
# the policy data's).
_digest(md) := {
	"md": md,
	"name": name,
	"header": lower(name),
	"algorithms": _algorithms(md),
	"leeway": _leeway(md),
	"keys": {alg: _keys_in(alg, src) | some alg in _supported_algorithms},
} if {
	name := _header_name(md)
	src := _key_source(md)
}

# The result for a prepared p (prepare's value). The first branch is the
# usual request: prepared valid metadata and a well-formed context. Any other
# input goes through _decide, which checks everything in order and reports
# the first problem.
run(ctx, p) := r if {
	c := p.fast
	headers := ctx.request.headers
	is_object(headers)
	r := _authenticate(c, headers)
} else := r if {
	r = _decide(ctx, p.md)
} else := _error("jwtValidation: evaluation failed")

_decide(ctx, md) := _error(msg) if {
	msg = _md_error(md)
} else := _error(msg) if {
	msg = _ctx_error(ctx)
} else := _error(msg) if {
	msg = _data_error
} else := _authenticate(_digest(md), ctx.request.headers)

# The result for the digest c of valid metadata, a valid context and data,
# from the header on. The first branch is the usual case: a well-formed
# bearer token under the header's lower-case name, an allowed alg and a
# signature that verifies; it computes what the second branch (the same
# header) does through _token, _check_token and _check_alg's first branch,
# with fewer calls. (Its token matches _jwt_shape, so it is the single word
# _token requires.)
_authenticate(c, headers) := _check_claims(c, payload, time.now_ns() / 1000000000) if {
	v := headers[c.header]
	is_string(v)
	count(v) > 7
	lower(substring(v, 0, 7)) == "bearer "
	tok := trim_space(substring(v, 7, -1))
	[header, payload] := _jwt_parts(tok)
	alg := header.alg
	lower(alg) != "none"
	alg in c.algorithms
	# _verified(alg, tok, _keys(alg, c)), written out to save two calls.
	some key in c.keys[alg]
	_verify(alg, tok, key) == true
} else := _check_token(c, tok) if {
	v := headers[c.header]
	is_string(v)
	tok := _token(trim_space(v), c.name)
} else := _with_header(c, v) if {
	v = _header(headers, c.name)
} else := _deny("token missing")

# v: the value of the configured header.
_with_header(c, v) := _error(sprintf("malformed context: header %s must be a string", [c.header])) if {
	not is_string(v)
} else := _deny("token missing") if {
	trim_space(v) == ""
} else := _check_token(c, tok) if {
	tok := _token(trim_space(v), c.name)
} else := _deny("malformed authorization header")

# tok: the token from the header.
_check_token(c, tok) := _check_alg(c, tok, header.alg, payload) if {
	[header, payload] := _jwt_parts(tok)
} else := _deny("malformed token")

# alg: the token's alg. The first branch is the usual case: an allowed alg
# and a signature that verifies (with some key, so there is one). Otherwise
# the branches below find the first check that fails, in the order
# documented above; the signature is never verified twice.
_check_alg(c, tok, alg, payload) := _check_claims(c, payload, time.now_ns() / 1000000000) if {
	lower(alg) != "none"
	alg in c.algorithms
	_verified(alg, tok, _keys(alg, c))
} else := _deny("unsigned token rejected") if {
	lower(alg) == "none"
} else := _deny("algorithm not allowed") if {
	not alg in c.algorithms
} else := _error(sprintf("no key material configured for %s", [alg])) if {
	count(_keys(alg, c)) == 0
} else := _deny("invalid signature")

# The keys of digest c for a token signed with alg.
_keys(alg, c) := object.get(c.keys, alg, [])

# payload: the verified claims at now (seconds), for digest c. The first
# branch is the usual case, where claims_error is undefined: a numeric exp
# not yet passed, no nbf or a numeric one already reached, and issuer and
# audience (when configured) equal to the iss and aud claims.
_check_claims(c, payload, now) := {
	"status": "OK",
	"message": "token valid",
	"instructions": [
		{"type": "SET_STATE", "key": "claims", "value": payload},
		{"type": "SET_STATE", "key": "user", "value": sub},
	],
	"metadata": {"auth_method": "jwt"},
} if {
	# _valid(payload) written out for a payload with a sub, to save a call.
	sub := payload.sub
	is_string(sub)
	sub != ""
	leeway := c.leeway
	exp := payload.exp
	is_number(exp)
	now < exp + leeway
	nbf := object.get(payload, "nbf", now)
	is_number(nbf)
	nbf <= now + leeway
	md := c.md
	iss := object.get(payload, "iss", null)
	object.get(md, "issuer", iss) == iss
	aud := object.get(payload, "aud", null)
	object.get(md, "audience", aud) == aud
} else := _deny(msg) if {
	msg = claims_error(payload, c.md, now)
} else := _valid(payload)

# --- claims (pure: tests call it with a crafted `now`) --------------------------

# claims_error(payload, md, now_s) is the reason the (verified) claims are not
# acceptable at time now_s (seconds since the epoch), undefined when they are.
claims_error(payload, md, now_s) := "invalid exp claim" if {
	"exp" in object.keys(payload)
	not is_number(payload.exp)
} else := "token expired" if {
	now_s >= payload.exp + _leeway(md)
} else := "invalid nbf claim" if {
	"nbf" in object.keys(payload)
	not is_number(payload.nbf)
} else := "token not yet valid" if {
	payload.nbf > now_s + _leeway(md)
} else := "issuer mismatch" if {
	iss = object.get(md, "issuer", null)
	iss != null
	object.get(payload, "iss", null) != iss
} else := "audience mismatch" if {
	aud = object.get(md, "audience", null)
	aud != null
	not _audience_ok(object.get(payload, "aud", null), aud)
}

_audience_ok(claim, aud) if claim == aud

_audience_ok(claim, aud) if {
	is_array(claim)
	aud in claim
}

# --- token parsing --------------------------------------------------------------

# The token in v, the trimmed header: "Bearer <token>" (scheme
# case-insensitive); a custom header may also carry the bare token.
_token(v, name) := t if {
	count(v) > 7
	lower(substring(v, 0, 7)) == "bearer "
	t := trim_space(substring(v, 7, count(v) - 7))
	_single_word(t)
} else := t if {
	lower(name) != "authorization"
	t := v
	not startswith(lower(t), "bearer ")
	_single_word(t)
}

_single_word(t) if {
	t != ""
	not contains(t, " ")
	not contains(t, "\t")
}

# [header, payload] of tok, decoded, defined when tok is well-formed: three
# dot-separated base64url segments, the first two non-empty, each in
# canonical form; header and payload JSON objects; the header names its alg.
# Checked before any io.jwt.* call. (What io.jwt.decode would give for the
# header and payload of such a token, without decoding it a second time.)
#
# Canonical: unpadded, with zero trailing bits (the only form a JWT signer
# produces), so that decoding behaves identically everywhere. A segment is
# groups of four characters, then possibly a tail of two whose last
# character is in [AQgw], or of three whose last is in
# [AEIMQUYcgkosw048] (a tail of one is never valid). One regular expression
# checks the three segments (_jwt_shape).
_jwt_parts(tok) := [header, payload] if {
	regex.match(_jwt_shape, tok)
	parts := split(tok, ".")
	h := base64url.decode(parts[0])
	json.is_valid(h)
	header := json.unmarshal(h)
	is_object(header)
	is_string(header.alg)
	not _nested_jwt(header)
	p := base64url.decode(parts[1])
	json.is_valid(p)
	payload := json.unmarshal(p)
	is_object(payload)
}

# Three segments: two non-empty ones, then the signature (possibly empty).
_jwt_shape := `^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{4}|[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])\.(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{4}|[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])\.(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$`

# Nested JWTs (cty: JWT) are not supported.
_nested_jwt(header) if {
	cty = object.get(header, "cty", "")
	is_string(cty)
	upper(cty) == "JWT"
}

# --- signature --------------------------------------------------------------------

_verified(alg, tok, keys) if {
	some key in keys
	_verify(alg, tok, key) == true
}

_verify(alg, tok, key) := io.jwt.verify_rs256(tok, key) if alg == "RS256"
else := io.jwt.verify_rs384(tok, key) if alg == "RS384"
else := io.jwt.verify_rs512(tok, key) if alg == "RS512"
else := io.jwt.verify_ps256(tok, key) if alg == "PS256"
else := io.jwt.verify_ps384(tok, key) if alg == "PS384"
else := io.jwt.verify_ps512(tok, key) if alg == "PS512"
else := io.jwt.verify_es256(tok, key) if alg == "ES256"
else := io.jwt.verify_es384(tok, key) if alg == "ES384"
else := io.jwt.verify_es512(tok, key) if alg == "ES512"
else := io.jwt.verify_hs256(tok, key) if alg == "HS256"
else := io.jwt.verify_hs384(tok, key) if alg == "HS384"
else := io.jwt.verify_hs512(tok, key) if alg == "HS512"

# Key material: the metadata's when it has any, else the policy data's.
_key_source(md) := md if {
	_has_key_material(md)
} else := _data_cfg

_has_key_material(md) if {
	[object.get(md, "jwks", null), object.get(md, "public_key_pem", null), object.get(md, "secret", null)] != [null, null, null]
}

_keys_in(alg, src) := _string_key(object.get(src, "secret", null)) if {
	startswith(alg, "HS")
} else := array.concat(_jwks_keys(object.get(src, "jwks", null)), _string_key(object.get(src, "public_key_pem", null)))

# j: the jwks of the key source, if any.
_jwks_keys(j) := [json.marshal(j)] if {
	is_object(j)
} else := [j] if {
	is_string(j)
} else := []

# s: a PEM key or a secret, if any.
_string_key(s) := [s] if {
	_nonempty_string(s)
} else := []

# Key material is checked for shape only: io.jwt.verify_* fails (an error, or
# undefined in non-strict mode) on key material it cannot parse.
_jwk_set(j) if {
	is_object(j)
	keys = object.get(j, "keys", null)
	is_array(keys)
	every k in keys {
		is_object(k)
		is_string(object.get(k, "kty", null))
	}
}

_jwk_set_json(j) if {
	is_string(j)
	json.is_valid(j)
	_jwk_set(json.unmarshal(j))
}

_pem(p) if {
	is_string(p)
	contains(p, "-----BEGIN ")
	contains(p, "-----END ")
}

# --- metadata -------------------------------------------------------------------

_supported_algorithms := {
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "HS256", "HS384", "HS512",
}

# The metadata fields that hold key material.
_key_fields := ["jwks", "public_key_pem", "secret"]

_known_fields := {
	"issuer", "audience", "algorithms", "leeway_seconds",
	"header_name", "jwks", "public_key_pem", "secret",
}

_algorithms(md) := object.get(md, "algorithms", ["RS256", "ES256"])

_leeway(md) := object.get(md, "leeway_seconds", 60)

_header_name(md) := object.get(md, "header_name", "Authorization")

_md_error(md) := "invalid metadata: must be an object" if {
	not is_object(md)
} else := concat("", ["invalid metadata: unknown field(s) ", concat(", ", fs)]) if {
	fs = sort([f | some f, _ in md; not f in _known_fields])
	count(fs) > 0
} else := "invalid metadata: issuer must be a non-empty string" if {
	not _optional_nonempty_string(object.get(md, "issuer", null))
} else := "invalid metadata: audience must be a non-empty string" if {
	not _optional_nonempty_string(object.get(md, "audience", null))
} else := "invalid metadata: algorithms must be a non-empty array" if {
	algs = _algorithms(md)
	not _nonempty_array(algs)
} else := "invalid metadata: algorithm none is never accepted" if {
	_lists_none(_algorithms(md))
} else := "invalid metadata: unsupported algorithm in algorithms" if {
	not _all_supported(_algorithms(md))
} else := "invalid metadata: leeway_seconds must be a number >= 0" if {
	not _nonnegative_number(_leeway(md))
} else := "invalid metadata: header_name must be a non-empty string" if {
	not _nonempty_string(_header_name(md))
} else := "invalid metadata: jwks must be a JWK set object ({\"keys\": [{\"kty\": ...}, ...]})" if {
	j = object.get(md, "jwks", null)
	j != null
	not _jwk_set(j)
} else := "invalid metadata: public_key_pem must be a PEM-encoded public key or certificate" if {
	p = object.get(md, "public_key_pem", null)
	p != null
	not _pem(p)
} else := "invalid metadata: secret must be a non-empty string" if {
	not _optional_nonempty_string(object.get(md, "secret", null))
}

# No key material in md that _md_error reports; the first branch is the
# usual case, metadata without key material.
_key_material_ok(md) if {
	count(object.filter(md, _key_fields)) == 0
} else if {
	not _bad_key_material(md)
}

# Key material in md that _md_error reports (its last three checks).
_bad_key_material(md) if {
	j := object.get(md, "jwks", null)
	j != null
	not _jwk_set(j)
}

_bad_key_material(md) if {
	p := object.get(md, "public_key_pem", null)
	p != null
	not _pem(p)
}

_bad_key_material(md) if {
	not _optional_nonempty_string(object.get(md, "secret", null))
}

# --- context and data -----------------------------------------------------------

_ctx_error(ctx) := "malformed context: ctx must be an object" if {
	not is_object(ctx)
} else := "malformed context: request must be an object" if {
	not is_object(object.get(ctx, "request", null))
} else := "malformed context: request.headers must be an object" if {
	not is_object(object.get(ctx.request, "headers", null))
}

_header(headers, name) := v if {
	v = headers[lower(name)]
} else := v if {
	vs = [x | some k, x in headers; is_string(k); lower(k) == lower(name)]
	count(vs) == 1
	v = vs[0]
}

_data_raw := d if {
	d = data.policy_data.jwtValidation
} else := {}

_data_cfg := d if {
	d = _data_raw
	is_object(d)
} else := {}

_data_error := "policy data: jwtValidation must be an object" if {
	not is_object(_data_raw)
} else := "policy data: jwtValidation.jwks must be a JWK set (object or JSON string)" if {
	j = object.get(_data_raw, "jwks", null)
	j != null
	not _jwk_set(j)
	not _jwk_set_json(j)
} else := "policy data: jwtValidation.public_key_pem must be a PEM-encoded public key or certificate" if {
	p = object.get(_data_raw, "public_key_pem", null)
	p != null
	not _pem(p)
} else := "policy data: jwtValidation.secret must be a string" if {
	s = object.get(_data_raw, "secret", null)
	s != null
	not is_string(s)
}

# --- results --------------------------------------------------------------------

_deny(reason) := {
	"status": "POLICY_DENIED",
	"message": reason,
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 401,
		"headers": {"WWW-Authenticate": "Bearer error=\"invalid_token\""},
		"body": concat("", ["{\"error\":\"", reason, "\"}"]),
	}],
	"metadata": {},
}

# A valid token sets the chain state "claims", and "user" when sub is a
# non-empty string.
_valid(claims) := {
	"status": "OK",
	"message": "token valid",
	"instructions": [
		{"type": "SET_STATE", "key": "claims", "value": claims},
		{"type": "SET_STATE", "key": "user", "value": sub},
	],
	"metadata": {"auth_method": "jwt"},
} if {
	sub := object.get(claims, "sub", null)
	_nonempty_string(sub)
} else := {
	"status": "OK",
	"message": "token valid",
	"instructions": [{"type": "SET_STATE", "key": "claims", "value": claims}],
	"metadata": {"auth_method": "jwt"},
}

_error(msg) := {
	"status": "POLICY_ERROR",
	"message": msg,
	"instructions": [],
	"metadata": {},
}

_nonempty_string(x) if {
	is_string(x)
	x != ""
}

_optional_nonempty_string(x) if x == null

_optional_nonempty_string(x) if _nonempty_string(x)

_lists_none(algs) if {
	some a in algs
	is_string(a)
	lower(a) == "none"
}

_all_supported(algs) if {
	every a in algs {
		a in _supported_algorithms
	}
}

_nonempty_array(x) if {
	is_array(x)
	count(x) > 0
}

_nonnegative_number(x) if {
	is_number(x)
	x >= 0
}
