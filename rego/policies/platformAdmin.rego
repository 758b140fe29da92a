# METADATA
# title: platformAdmin
# description: >-
#   Requires a platform administrator. The caller (state "user", else the sub
#   claim of state "claims") must be listed in data.synced.platform_admins.
#   A request without a caller is answered with 401, any other caller that is
#   not listed with 403.
# custom:
#   version: 1.0.0
#   phases: [request]
#   tier: admin
#   schema:
#     type: object
#     additionalProperties: false
#     properties: {}
package policies.platformAdmin

import rego.v1

# result(ctx, md) is total: every branch ends in a result object, and the final
# else turns anything unforeseen into POLICY_ERROR.
#
# The first branch is the usual request: empty metadata and a well-formed
# context and data, checked in one body (so none of the error messages below
# can apply); _verdict then only looks at the caller. Any other input goes
# through _decide, which checks everything in order and reports the first
# problem.
result(ctx, md) := r if {
	md == {}
	is_object(ctx)
	state := object.get(ctx, "state", {})
	is_object(state)
	is_object(object.get(state, "claims", {}))
	is_object(_synced_raw)
	admins := _admins_raw
	is_array(admins)
	r := _verdict(_user(ctx), admins)
} else := r if {
	r = _decide(ctx, md)
} else := _error("platformAdmin: evaluation failed")

_decide(ctx, md) := _error(msg) if {
	msg = _md_error(md)
} else := _error(msg) if {
	msg = _ctx_error(ctx)
} else := _error(msg) if {
	msg = _data_error
} else := _verdict(_user(ctx), _admins_raw)

# The result for valid metadata, context and data ("" is no caller). The
# first branch is the usual allow.
_verdict(user, admins) := _allowed(user) if {
	user != ""
	user in admins
} else := _unauthenticated if {
	user == ""
} else := _forbidden

# The caller: state "user" if a non-empty string, else the claims' sub; "" if
# neither.
_user(ctx) := u if {
	u = object.get(_state(ctx), "user", null)
	_nonempty_string(u)
} else := u if {
	u = object.get(_claims(ctx), "sub", null)
	_nonempty_string(u)
} else := ""

_state(ctx) := s if {
	s = object.get(ctx, "state", {})
	is_object(s)
} else := {}

_claims(ctx) := c if {
	c = object.get(_state(ctx), "claims", {})
	is_object(c)
} else := {}

# --- metadata -------------------------------------------------------------------

_md_error(md) := "invalid metadata: must be an object" if {
	not is_object(md)
} else := concat("", ["invalid metadata: unknown field(s) ", concat(", ", fs)]) if {
	fs = sort([f | some f, _ in md])
	count(fs) > 0
}

# --- context and data -------------------------------------------------------------

_ctx_error(ctx) := "malformed context: ctx must be an object" if {
	not is_object(ctx)
} else := "malformed context: state must be an object" if {
	s = object.get(ctx, "state", null)
	s != null
	not is_object(s)
} else := "malformed context: state.claims must be an object" if {
	c = object.get(_state(ctx), "claims", null)
	c != null
	not is_object(c)
}

# data.synced may be absent (no sections); a present section must have its type.
_synced_raw := s if {
	s = data.synced
} else := {}

_admins_raw := a if {
	a = data.synced.platform_admins
} else := []

_data_error := "policy data: synced must be an object" if {
	not is_object(_synced_raw)
} else := "policy data: synced.platform_admins must be an array" if {
	not is_array(_admins_raw)
}

# --- results --------------------------------------------------------------------

_allowed(user) := {
	"status": "OK",
	"message": "caller is a platform admin",
	"instructions": [],
	"metadata": {"platform_admin": user},
}

_unauthenticated := {
	"status": "POLICY_DENIED",
	"message": "authentication required",
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 401,
		"headers": {},
		"body": "{\"error\":\"authentication required\"}",
	}],
	"metadata": {},
}

_forbidden := {
	"status": "POLICY_DENIED",
	"message": "platform admin required",
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 403,
		"headers": {},
		"body": "{\"error\":\"forbidden\"}",
	}],
	"metadata": {},
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
