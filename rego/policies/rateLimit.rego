# METADATA
# title: rateLimit
# description: >-
#   Token-bucket rate limiting through the agent's native builtin
#   rate_limit.take(bucket_key, requests_per_second, burst). The bucket key is
#   "<route>|<key kind>|<value>" where the value is the client IP, the SHA-256
#   of the API key (never the key itself), the authenticated user, or a request
#   header. When the chosen identity is absent the client IP bucket is used.
#   Over the limit: 429 with Retry-After.
# custom:
#   version: 1.0.0
#   prepare: true
#   phases: [request]
#   tier: whitelist
#   schema:
#     type: object
#     additionalProperties: false
#     required: [requests_per_second]
#     properties:
#       requests_per_second:
#         type: number
#         exclusiveMinimum: 0
#       burst:
#         type: integer
#         minimum: 1
#         description: bucket size; defaults to ceil(requests_per_second)
#       key:
#         type: string
#         pattern: "^(client_ip|api_key|user|header:.+)$"
#         default: client_ip
#       api_key_header:
#         type: string
#         minLength: 1
#         default: X-API-Key
#         description: header holding the API key when key is api_key
package policies.rateLimit

import rego.v1

# result(ctx, md) is run(ctx, prepare(md)): it validates its inputs, calls
# rate_limit.take exactly once and hands the builtin's answer to decide/3,
# which is pure.
result(ctx, md) := run(ctx, prepare(md))

# What run needs from the metadata md, which is the same for every request
# of a route: the chain compiler evaluates it in a rule of its own, computed
# once per program and data (custom.prepare in the METADATA above). "md" is
# the metadata; "fast", for metadata of the schema's shape keyed by client
# IP (so none of the metadata error messages below can apply), holds the
# rate and the burst. (Pure: rate_limit.take only runs in run.)
prepare(md) := {"md": md, "fast": {"rps": rps, "burst": burst}} if {
	is_object(md)
	count(object.remove(md, {"requests_per_second", "burst", "key", "api_key_header"})) == 0
	rps := md.requests_per_second
	is_number(rps)
	rps > 0
	burst := object.get(md, "burst", ceil(rps))
	is_number(burst)
	burst >= 1
	floor(burst) == burst
	object.get(md, "key", "client_ip") == "client_ip"
	akh := object.get(md, "api_key_header", "X-API-Key")
	is_string(akh)
	akh != ""
} else := {"md": md}

# The result for a prepared p (prepare's value). The first branch is the
# usual request: prepared valid metadata and a well-formed context with a
# client IP (so none of the error messages below can apply). Nothing in it
# has side effects: rate_limit.take runs in _limited, after the body has
# succeeded, and _limited is total, so the builtin is never called twice.
run(ctx, p) := _limited(concat("|", [route, "client_ip", ip]), c.rps, c.burst, "client_ip") if {
	c := p.fast
	is_object(ctx)
	route := ctx.route
	is_string(route)
	request := ctx.request
	is_object(request)
	is_object(request.headers)
	ip := request.client_ip
	is_string(ip)
	ip != ""
	is_object(object.get(ctx, "state", {}))
} else := _error(msg) if {
	msg = _md_error(p.md)
} else := _error(msg) if {
	msg = _ctx_error(ctx, p.md)
} else := _limited(key, rps, burst, kind_name) if {
	md := p.md
	key = bucket_key(ctx, md)
	rps = _rps(md)
	burst = _burst(md)
	kind_name = _kind_name(md)
} else := _error("rate limiter unavailable")

# The one call of rate_limit.take, and its verdict.
_limited(key, rps, burst, kind_name) := r if {
	take = rate_limit.take(key, rps, burst)
	r = _verdict(take, kind_name)
} else := _error("rate limiter unavailable")

# decide(ctx, md, take) turns the builtin's result
# {"allowed", "remaining", "retry_after_seconds", "limit"} into the policy result.
decide(ctx, md, take) := _error("rate limiter returned an invalid result") if {
	not is_object(take)
} else := _error("rate limiter returned an invalid result") if {
	not is_boolean(object.get(take, "allowed", null))
} else := _within(_metadata(md, take)) if {
	take.allowed == true
} else := _exceeded(take, _metadata(md, take))

# decide/3 for the bucket kind kind_name (_kind_name(md)); the first branch is
# the usual answer (allowed, with a numeric limit and remaining; its result is
# _within's, written out to save a call).
_verdict(take, kind_name) := {
	"status": "OK",
	"message": "within rate limit",
	"instructions": [],
	"metadata": {
		"rate_limit_key": kind_name,
		"rate_limit_limit": format_int(floor(limit), 10),
		"rate_limit_remaining": format_int(floor(remaining), 10),
	},
} if {
	take.allowed == true
	limit := take.limit
	is_number(limit)
	remaining := take.remaining
	is_number(remaining)
} else := _error("rate limiter returned an invalid result") if {
	not is_object(take)
} else := _error("rate limiter returned an invalid result") if {
	not is_boolean(object.get(take, "allowed", null))
} else := _within(_take_metadata(kind_name, take)) if {
	take.allowed == true
} else := _exceeded(take, _take_metadata(kind_name, take))

_within(metadata) := {
	"status": "OK",
	"message": "within rate limit",
	"instructions": [],
	"metadata": metadata,
}

_exceeded(take, metadata) := {
	"status": "POLICY_DENIED",
	"message": "rate limit exceeded",
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 429,
		"headers": {"Retry-After": format_int(_retry_after(take), 10)},
		"body": "{\"error\":\"rate limit exceeded\"}",
	}],
	"metadata": metadata,
}

# Whole seconds, at least 1.
_retry_after(take) := max([1, ceil(r)]) if {
	r = object.get(take, "retry_after_seconds", null)
	is_number(r)
} else := 1

_metadata(md, take) := _take_metadata(_kind_name(md), take)

_take_metadata(kind_name, take) := object.union(
	{"rate_limit_key": kind_name},
	{name: format_int(floor(v), 10) |
		some name, field in {"rate_limit_limit": "limit", "rate_limit_remaining": "remaining"}
		v = object.get(take, field, null)
		is_number(v)
	},
)

# --- bucket key -----------------------------------------------------------------

bucket_key(ctx, md) := concat("|", [ctx.route, id[0], id[1]]) if {
	id = _identity(ctx, md)
}

# [kind, value]; falls back to the client IP when the identity is absent.
_identity(ctx, md) := ["api_key", crypto.sha256(v)] if {
	_kind(md) == "api_key"
	v = _header(ctx.request.headers, _api_key_header(md))
	_nonempty_string(v)
} else := ["user", u] if {
	_kind(md) == "user"
	u = _user(ctx)
} else := [_kind_name(md), v] if {
	startswith(_kind(md), "header:")
	v = _header(ctx.request.headers, _header_kind_name(md))
	_nonempty_string(v)
} else := ["client_ip", _client_ip(ctx)]

_user(ctx) := u if {
	u = object.get(_state(ctx), "user", null)
	_nonempty_string(u)
} else := u if {
	claims = object.get(_state(ctx), "claims", {})
	is_object(claims)
	u = object.get(claims, "sub", null)
	_nonempty_string(u)
}

_state(ctx) := s if {
	s = object.get(ctx, "state", {})
	is_object(s)
} else := {}

_client_ip(ctx) := ip if {
	ip = object.get(ctx.request, "client_ip", "")
	_nonempty_string(ip)
} else := "unknown"

# --- metadata -------------------------------------------------------------------

_rps(md) := md.requests_per_second

_burst(md) := object.get(md, "burst", ceil(_rps(md)))

_kind(md) := object.get(md, "key", "client_ip")

# "header:X-Tenant" -> "header:x-tenant"
_kind_name(md) := concat("", ["header:", _header_kind_name(md)]) if {
	startswith(_kind(md), "header:")
} else := _kind(md)

_header_kind_name(md) := lower(trim_space(substring(_kind(md), 7, count(_kind(md)) - 7)))

_api_key_header(md) := object.get(md, "api_key_header", "X-API-Key")

_md_error(md) := "invalid metadata: must be an object" if {
	not is_object(md)
} else := concat("", ["invalid metadata: unknown field(s) ", concat(", ", fs)]) if {
	fs = sort([f | some f, _ in md; not f in {"requests_per_second", "burst", "key", "api_key_header"}])
	count(fs) > 0
} else := "invalid metadata: requests_per_second is required" if {
	not "requests_per_second" in object.keys(md)
} else := "invalid metadata: requests_per_second must be a number > 0" if {
	not _positive_number(md.requests_per_second)
} else := "invalid metadata: burst must be an integer >= 1" if {
	b = object.get(md, "burst", 1)
	not _integer_at_least_one(b)
} else := "invalid metadata: key must be client_ip, api_key, user or header:<name>" if {
	not _valid_kind(_kind(md))
} else := "invalid metadata: api_key_header must be a non-empty string" if {
	not _nonempty_string(_api_key_header(md))
}

_valid_kind(k) if k in {"client_ip", "api_key", "user"}

_valid_kind(k) if {
	is_string(k)
	startswith(k, "header:")
	trim_space(substring(k, 7, count(k) - 7)) != ""
}

# --- context --------------------------------------------------------------------

_ctx_error(ctx, md) := "malformed context: ctx must be an object" if {
	not is_object(ctx)
} else := "malformed context: route must be a string" if {
	not is_string(object.get(ctx, "route", null))
} else := "malformed context: request must be an object" if {
	not is_object(object.get(ctx, "request", null))
} else := "malformed context: request.headers must be an object" if {
	not is_object(object.get(ctx.request, "headers", null))
} else := "malformed context: request.client_ip must be a string" if {
	ip = object.get(ctx.request, "client_ip", null)
	ip != null
	not is_string(ip)
} else := "malformed context: state must be an object" if {
	s = object.get(ctx, "state", null)
	s != null
	not is_object(s)
} else := sprintf("malformed context: header %s must be a string", [name]) if {
	name = _identity_header(md)
	v = _header(ctx.request.headers, name)
	not is_string(v)
}

_identity_header(md) := lower(_api_key_header(md)) if {
	_kind(md) == "api_key"
} else := _header_kind_name(md) if {
	startswith(_kind(md), "header:")
}

_header(headers, name) := v if {
	v = headers[lower(name)]
} else := v if {
	vs = [x | some k, x in headers; is_string(k); lower(k) == lower(name)]
	count(vs) == 1
	v = vs[0]
}

# --- helpers --------------------------------------------------------------------

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

_positive_number(x) if {
	is_number(x)
	x > 0
}

_integer_at_least_one(x) if {
	is_number(x)
	x >= 1
	floor(x) == x
}
