# METADATA
# title: roleCheck
# description: >-
#   Requires roles. The caller's roles are the union of the roles claim of
#   the validated token (state "claims"; an array or a space-separated string)
#   and the role bindings data.policy_data.roleCheck.bindings[<user>] and
#   data.synced.role_bindings[<user>] (synced from the journal, cached for
#   degraded mode), where user is state "user", else the claims' sub. match "any" needs one of the
#   required roles, "all" needs every one of them.
# custom:
#   version: 1.0.0
#   prepare: true
#   phases: [request]
#   tier: rbac
#   schema:
#     type: object
#     additionalProperties: false
#     required: [required_roles]
#     properties:
#       required_roles:
#         type: array
#         minItems: 1
#         items:
#           type: string
#           minLength: 1
#       match:
#         type: string
#         enum: [any, all]
#         default: any
#       roles_claim:
#         type: string
#         minLength: 1
#         default: roles
package policies.roleCheck

import rego.v1

# result(ctx, md) is run(ctx, prepare(md)) and total: every branch of run
# ends in a result object, and its final else turns anything unforeseen into
# POLICY_ERROR.
result(ctx, md) := run(ctx, prepare(md))

# What run needs from the metadata md and the data, which are the same for
# every request of a route: the chain compiler evaluates it in a rule of
# its own, computed once per program and data (custom.prepare in the
# METADATA above). "md" is the metadata; "fast", for metadata of the
# schema's shape and well-formed data (so none of the error messages of
# _md_error and _data_error can apply), holds its values with their
# defaults.
prepare(md) := {"md": md, "fast": {"required": required, "match": match, "claim": claim}} if {
	is_object(md)
	count(object.remove(md, {"required_roles", "match", "roles_claim"})) == 0
	required := md.required_roles
	is_array(required)
	count(required) > 0
	every role in required {
		is_string(role)
		role != ""
	}
	match := object.get(md, "match", "any")
	match in {"any", "all"}
	claim := object.get(md, "roles_claim", "roles")
	is_string(claim)
	claim != ""
	is_object(_bindings_raw)
	is_object(_synced_raw)
} else := {"md": md}

# The result for a prepared p (prepare's value). The first branch is the
# usual request: prepared valid metadata and a well-formed context;
# _verdict then only looks at the roles. Any other input goes through
# _decide, which checks everything in order and reports the first problem.
run(ctx, p) := _allowed if {
	# The usual grant: an "any" match with one of the roles in the claims'
	# roles array (the first branch below, where _verdict's first branch
	# holds; written out to save two calls).
	c := p.fast
	c.match == "any"
	is_object(ctx)
	state := object.get(ctx, "state", {})
	is_object(state)
	claims := object.get(state, "claims", {})
	is_object(claims)
	have := claims[c.claim]
	is_array(have)
	some role in c.required
	role in have
} else := r if {
	c := p.fast
	is_object(ctx)
	state := object.get(ctx, "state", {})
	is_object(state)
	claims := object.get(state, "claims", {})
	is_object(claims)
	r := _verdict(ctx, p.md, claims, c.claim, c.required, c.match)
} else := r if {
	r = _decide(ctx, p.md)
} else := _error("roleCheck: evaluation failed")

_decide(ctx, md) := _error(msg) if {
	msg = _md_error(md)
} else := _error(msg) if {
	msg = _ctx_error(ctx)
} else := _error(msg) if {
	msg = _data_error
} else := _verdict(ctx, md, _claims(ctx), _roles_claim(md), _required(md), _match(md))

# The result for valid metadata, context and data. The first branch is the
# usual allow: the roles claim (under its exact name) is an array holding the
# required role(s), so no role is missing whatever the bindings hold.
_verdict(ctx, md, claims, claim, required, match) := _allowed if {
	have := claims[claim]
	is_array(have)
	_satisfied(match, required, have)
} else := _deny(missing, match) if {
	missing = missing_roles(roles(ctx, md), required, match)
	count(missing) > 0
} else := _allowed

_satisfied("any", required, have) if {
	some role in required
	role in have
}

_satisfied("all", required, have) if {
	every role in required {
		role in have
	}
}

_allowed := {
	"status": "OK",
	"message": "required roles present",
	"instructions": [],
	"metadata": {},
}

# missing_roles(have, required, match): the required roles (sorted) that make the
# check fail; empty when it passes.
missing_roles(have, required, "all") := sort([r | some r in required; not r in have])

missing_roles(have, required, "any") := [] if {
	_any_in(required, have)
} else := sort({r | some r in required})

_any_in(required, have) if {
	some r in required
	r in have
}

# roles(ctx, md): the caller's roles, from the token claim and the bindings.
roles(ctx, md) := _claim_roles(_claims(ctx), _roles_claim(md)) | _bound_roles(_user(ctx))

_claim_roles(claims, name) := _role_set(v) if {
	v = _claim_value(claims, name)
} else := set()

_role_set(v) := {r | some r in v; is_string(r); r != ""} if {
	is_array(v)
} else := {r | some r in split(v, " "); r != ""} if {
	is_string(v)
} else := set()

# An exact claim name wins; otherwise a dotted name is a path (realm_access.roles).
_claim_value(claims, name) := v if {
	v = claims[name]
} else := v if {
	contains(name, ".")
	v = object.get(claims, split(name, "."), null)
	v != null
}

_bound_roles(user) := _roles_in(_bindings, user) | _roles_in(_synced_bindings, user)

_roles_in(bindings, user) := {r | some r in bindings[user]; is_string(r); r != ""} if {
	is_array(bindings[user])
} else := set()

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

_required(md) := object.get(md, "required_roles", [])

_match(md) := object.get(md, "match", "any")

_roles_claim(md) := object.get(md, "roles_claim", "roles")

_md_error(md) := "invalid metadata: must be an object" if {
	not is_object(md)
} else := concat("", ["invalid metadata: unknown field(s) ", concat(", ", fs)]) if {
	fs = sort([f | some f, _ in md; not f in {"required_roles", "match", "roles_claim"}])
	count(fs) > 0
} else := "invalid metadata: required_roles must be a non-empty array of non-empty strings" if {
	not _role_list(_required(md))
} else := "invalid metadata: match must be any or all" if {
	not _match(md) in {"any", "all"}
} else := "invalid metadata: roles_claim must be a non-empty string" if {
	not _nonempty_string(_roles_claim(md))
}

_role_list(x) if {
	is_array(x)
	count(x) > 0
	every r in x {
		_nonempty_string(r)
	}
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

_bindings_raw := b if {
	b = data.policy_data.roleCheck.bindings
} else := {}

_bindings := b if {
	b = _bindings_raw
	is_object(b)
} else := {}

_synced_raw := b if {
	b = data.synced.role_bindings
} else := {}

_synced_bindings := b if {
	b = _synced_raw
	is_object(b)
} else := {}

_data_error := "policy data: roleCheck.bindings must be an object" if {
	not is_object(_bindings_raw)
} else := "policy data: synced.role_bindings must be an object" if {
	not is_object(_synced_raw)
}

# --- results --------------------------------------------------------------------

_deny(missing, "all") := _forbidden(concat("", ["missing required role(s): ", concat(", ", missing)]))

_deny(missing, "any") := _forbidden(concat("", ["requires one of the roles: ", concat(", ", missing)]))

_forbidden(reason) := {
	"status": "POLICY_DENIED",
	"message": reason,
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
