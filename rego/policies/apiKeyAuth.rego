# METADATA
# title: apiKeyAuth
# description: >-
#   Authenticates requests by API key. The key is read from the configured
#   header and looked up by its SHA-256 digest in
#   data.policy_data.apiKeyAuth.keys (an object mapping the lower-case hex
#   SHA-256 of each key to {"user_id": ..., ...}); plaintext keys never appear
#   in data, messages or metadata. A valid key sets the X-User-ID header and
#   the chain state "user".
# custom:
#   version: 1.0.0
#   prepare: true
#   phases: [request]
#   tier: rbac
#   schema:
#     type: object
#     additionalProperties: false
#     properties:
#       header_name:
#         type: string
#         minLength: 1
#         default: X-API-Key
#       required:
#         type: boolean
#         default: true
package policies.apiKeyAuth

import rego.v1

# result(ctx, md) is run(ctx, prepare(md)) and total: every branch of run
# ends in a result object, and its final else turns anything unforeseen into
# POLICY_ERROR.
result(ctx, md) := run(ctx, prepare(md))

# What run needs from the metadata md and the data, which are the same for
# every request of a route: the chain compiler evaluates it in a rule of
# its own, computed once per program and data (custom.prepare in the
# METADATA above). "md" is the metadata; "fast", for metadata of the
# schema's shape and well-formed data (so none of the error messages below
# can apply), holds the header name and the keys.
prepare(md) := {"md": md, "fast": {"name": name, "keys": keys}} if {
	is_object(md)
	count(object.remove(md, {"header_name", "required"})) == 0
	name := object.get(md, "header_name", "X-API-Key")
	is_string(name)
	name != ""
	is_boolean(object.get(md, "required", true))
	keys := data.policy_data.apiKeyAuth.keys
	is_object(keys)
} else := {"md": md}

# The result for a prepared p (prepare's value). The first branch is the
# usual request: prepared valid metadata and a well-formed context;
# _authenticate then needs only the header. Any other input goes through
# _decide, which checks everything in order and reports the first problem.
run(ctx, p) := r if {
	c := p.fast
	headers := ctx.request.headers
	is_object(headers)
	r := _authenticate(p.md, c.name, headers, c.keys)
} else := r if {
	r = _decide(ctx, p.md)
} else := _error("apiKeyAuth: evaluation failed")

_decide(ctx, md) := _error(msg) if {
	msg = _md_error(md)
} else := _error(msg) if {
	msg = _ctx_error(ctx)
} else := _error(msg) if {
	msg = _data_error
} else := _authenticate(md, _header_name(md), ctx.request.headers, _keys)

# The result for valid metadata, headers and keys. The first branch is the
# usual case (the header under its lower-case name, a valid entry; its result
# is _authenticated(user), written out to save a call); the digest and the
# header are computed once and passed on.
_authenticate(md, name, headers, keys) := {
	"status": "OK",
	"message": "API key valid",
	"instructions": [
		{"type": "SET_HEADER", "key": "X-User-ID", "value": user},
		{"type": "SET_STATE", "key": "user", "value": user},
	],
	"metadata": {"auth_method": "api_key"},
} if {
	v := headers[lower(name)]
	is_string(v)
	v != ""
	entry := keys[crypto.sha256(v)]
	is_object(entry)
	user := object.get(entry, "user_id", null)
	is_string(user)
	user != ""
} else := _with_header(md, name, keys, v) if {
	v = _header(headers, name)
} else := _missing(md)

# v: the value of the configured header.
_with_header(md, name, keys, v) := _error(sprintf("malformed context: header %s must be a string", [lower(name)])) if {
	not is_string(v)
} else := _missing(md) if {
	v == ""
} else := _lookup(keys, crypto.sha256(v))

# digest: the SHA-256 of the presented key.
_lookup(keys, digest) := _authenticated(user) if {
	entry = keys[digest]
	is_object(entry)
	user = object.get(entry, "user_id", null)
	is_string(user)
	user != ""
} else := _error("policy data: API key entry has no valid user_id") if {
	keys[digest]
} else := _invalid

# --- metadata -----------------------------------------------------------------

_header_name(md) := object.get(md, "header_name", "X-API-Key")

_required(md) := object.get(md, "required", true)

_md_error(md) := "invalid metadata: must be an object" if {
	not is_object(md)
} else := "invalid metadata: header_name must be a non-empty string" if {
	not _nonempty_string(_header_name(md))
} else := "invalid metadata: required must be a boolean" if {
	not is_boolean(_required(md))
} else := concat("", ["invalid metadata: unknown field(s) ", concat(", ", fs)]) if {
	fs = sort([f | some f, _ in md; not f in {"header_name", "required"}])
	count(fs) > 0
}

# --- context ------------------------------------------------------------------

_ctx_error(ctx) := "malformed context: ctx must be an object" if {
	not is_object(ctx)
} else := "malformed context: request must be an object" if {
	not is_object(object.get(ctx, "request", null))
} else := "malformed context: request.headers must be an object" if {
	not is_object(object.get(ctx.request, "headers", null))
}

# Header names in ctx are lower-case; an exact lower-case match wins, otherwise
# a single case-insensitive match is accepted (several are treated as absent).
_header(headers, name) := v if {
	v = headers[lower(name)]
} else := v if {
	vs = [x | some k, x in headers; is_string(k); lower(k) == lower(name)]
	count(vs) == 1
	v = vs[0]
}

# --- data ---------------------------------------------------------------------

_keys_raw := k if {
	k = data.policy_data.apiKeyAuth.keys
} else := {}

_keys := k if {
	k = _keys_raw
	is_object(k)
} else := {}

_data_error := "policy data: apiKeyAuth.keys must be an object" if {
	not is_object(_keys_raw)
}

# --- results ------------------------------------------------------------------

_missing(md) := {
	"status": "POLICY_DENIED",
	"message": "API key required",
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 401,
		"headers": {"WWW-Authenticate": "API-Key"},
		"body": "{\"error\":\"API key required\"}",
	}],
	"metadata": {},
} if {
	_required(md) == true
} else := {
	"status": "OK",
	"message": "no API key provided (optional)",
	"instructions": [],
	"metadata": {},
}

_invalid := {
	"status": "POLICY_DENIED",
	"message": "Invalid API key",
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 403,
		"headers": {},
		"body": "{\"error\":\"Invalid API key\"}",
	}],
	"metadata": {},
}

_authenticated(user) := {
	"status": "OK",
	"message": "API key valid",
	"instructions": [
		{"type": "SET_HEADER", "key": "X-User-ID", "value": user},
		{"type": "SET_STATE", "key": "user", "value": user},
	],
	"metadata": {"auth_method": "api_key"},
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
