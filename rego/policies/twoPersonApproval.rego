# METADATA
# title: twoPersonApproval
# description: >-
#   Requires a second person's approval for an operation. The approval id is
#   read from a request header and looked up in data.synced.approvals. The
#   approval must be for this operation, requested by the caller (state "user",
#   else the sub claim of state "claims"), approved by someone else, whose
#   roles in data.synced.role_bindings and the approval's approver_roles both
#   include required_role, and its expires_at (RFC 3339) must be in the future.
#   A request without a caller is answered with 401, any failed condition with
#   403.
# custom:
#   version: 1.0.0
#   phases: [request]
#   tier: two_person
#   schema:
#     type: object
#     additionalProperties: false
#     required: [operation, required_role]
#     properties:
#       operation:
#         type: string
#         minLength: 1
#         description: the operation an approval must be bound to
#       approval_header:
#         type: string
#         minLength: 1
#         default: x-approval-id
#         description: request header holding the approval id
#       required_role:
#         type: string
#         minLength: 1
#         description: role the approver must hold
package policies.twoPersonApproval

import rego.v1

# result(ctx, md) is total: every branch ends in a result object, and the final
# else turns anything unforeseen into POLICY_ERROR.
#
# The first branch is the usual request: metadata of the schema's shape and a
# well-formed context and data, checked in one body (so none of the error
# messages below can apply); _verdict then only looks at the caller, the
# approval id and the approval. Any other input goes through _decide, which
# checks everything in order and reports the first problem.
result(ctx, md) := r if {
	is_object(md)
	count(object.remove(md, {"operation", "approval_header", "required_role"})) == 0
	_nonempty_string(md.operation)
	_nonempty_string(md.required_role)
	header := object.get(md, "approval_header", "x-approval-id")
	_nonempty_string(header)
	is_object(ctx)
	request := ctx.request
	is_object(request)
	headers := request.headers
	is_object(headers)
	state := object.get(ctx, "state", {})
	is_object(state)
	is_object(object.get(state, "claims", {}))
	is_object(_synced_raw)
	approvals := _approvals_raw
	is_object(approvals)
	bindings := _bindings_raw
	is_object(bindings)
	r := _verdict(md, _user(ctx), _header(headers, lower(header)), approvals, bindings)
} else := r if {
	r = _decide(ctx, md)
} else := _error("twoPersonApproval: evaluation failed")

_decide(ctx, md) := _error(msg) if {
	msg = _md_error(md)
} else := _error(msg) if {
	msg = _ctx_error(ctx)
} else := _error(msg) if {
	msg = _data_error
} else := _verdict(md, _user(ctx), _header(ctx.request.headers, lower(_approval_header(md))), _approvals_raw, _bindings_raw)

# The result for valid metadata, context and data: user is the caller ("" if
# none), id the approval header's value (null if absent). The first branch is
# the usual allow, every condition checked in one body.
_verdict(md, user, id, approvals, bindings) := _approved(id, by) if {
	user != ""
	a := approvals[id]
	a.operation == md.operation
	a.requested_by == user
	by := a.approved_by
	_nonempty_string(by)
	by != user
	by != a.requested_by
	_qualified(by, a.approver_roles, bindings, md.required_role)
	expires_at := a.expires_at
	_timestamp(expires_at)
	time.parse_rfc3339_ns(expires_at) > time.now_ns()
} else := _unauthenticated if {
	user == ""
} else := _error(concat("", ["malformed context: header ", lower(_approval_header(md)), " must be a string"])) if {
	id != null
	not is_string(id)
} else := _denied("approval required", "approval required") if {
	id in {null, ""}
} else := _forbidden("unknown approval") if {
	not _has_key(approvals, id)
} else := _error(msg) if {
	msg = _approval_error(id, approvals[id])
} else := _check(md, user, id, approvals[id], bindings)

# The conditions on a well-formed approval a, in order; the first that fails
# decides.
_check(md, user, id, a, bindings) := _forbidden("approval is for another operation") if {
	a.operation != md.operation
} else := _forbidden("approval was requested by someone else") if {
	a.requested_by != user
} else := _forbidden("self-approval is not allowed") if {
	a.approved_by in {user, a.requested_by}
} else := _forbidden(concat("", ["approver lacks the required role ", md.required_role])) if {
	not _qualified(a.approved_by, a.approver_roles, bindings, md.required_role)
} else := _forbidden("approval expired") if {
	time.parse_rfc3339_ns(a.expires_at) <= time.now_ns()
} else := _approved(id, a.approved_by)

# The approver holds role in the role bindings, and the approval names it
# among its approver_roles.
_qualified(approver, approver_roles, bindings, role) if {
	_has_role(object.get(bindings, approver, []), role)
	_has_role(approver_roles, role)
}

# roles: an array of roles (anything else holds none).
_has_role(roles, role) if {
	is_array(roles)
	role in roles
}

_has_key(obj, key) if {
	_ = obj[key]
}

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

# Header names in ctx are lower-case; an exact lower-case match wins, otherwise
# a single case-insensitive match is accepted (several are treated as absent).
# null when absent.
_header(headers, name) := v if {
	v = headers[name]
} else := v if {
	vs = [x | some k, x in headers; is_string(k); lower(k) == name]
	count(vs) == 1
	v = vs[0]
} else := null

# --- metadata -------------------------------------------------------------------

_approval_header(md) := object.get(md, "approval_header", "x-approval-id")

_md_error(md) := "invalid metadata: must be an object" if {
	not is_object(md)
} else := concat("", ["invalid metadata: unknown field(s) ", concat(", ", fs)]) if {
	fs = sort([f | some f, _ in md; not f in {"operation", "approval_header", "required_role"}])
	count(fs) > 0
} else := "invalid metadata: operation must be a non-empty string" if {
	not _nonempty_string(object.get(md, "operation", null))
} else := "invalid metadata: required_role must be a non-empty string" if {
	not _nonempty_string(object.get(md, "required_role", null))
} else := "invalid metadata: approval_header must be a non-empty string" if {
	not _nonempty_string(_approval_header(md))
}

# --- context and data -------------------------------------------------------------

_ctx_error(ctx) := "malformed context: ctx must be an object" if {
	not is_object(ctx)
} else := "malformed context: request must be an object" if {
	not is_object(object.get(ctx, "request", null))
} else := "malformed context: request.headers must be an object" if {
	not is_object(object.get(ctx.request, "headers", null))
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

_approvals_raw := a if {
	a = data.synced.approvals
} else := {}

_bindings_raw := b if {
	b = data.synced.role_bindings
} else := {}

_data_error := "policy data: synced must be an object" if {
	not is_object(_synced_raw)
} else := "policy data: synced.approvals must be an object" if {
	not is_object(_approvals_raw)
} else := "policy data: synced.role_bindings must be an object" if {
	not is_object(_bindings_raw)
}

# The first problem with the approval a stored under id, if any.
_approval_error(id, a) := concat("", ["policy data: synced.approvals.", id, " must be an object"]) if {
	not is_object(a)
} else := concat("", ["policy data: synced.approvals.", id, ".", fs[0], " must be a non-empty string"]) if {
	fs = [f | some f in ["operation", "requested_by", "approved_by"]; not _nonempty_string(object.get(a, f, null))]
	count(fs) > 0
} else := concat("", ["policy data: synced.approvals.", id, ".approver_roles must be an array"]) if {
	not is_array(object.get(a, "approver_roles", null))
} else := concat("", ["policy data: synced.approvals.", id, ".expires_at must be an RFC 3339 timestamp"]) if {
	not _timestamp(object.get(a, "expires_at", null))
}

# x is a timestamp that time.parse_rfc3339_ns parses alike in every engine
# (it fails, or differs between engines, on anything else), checked before
# any call: "YYYY-MM-DDThh:mm:ss", optional fractional seconds (1 to 9
# digits), then "Z" or "+hh:mm"/"-hh:mm"; upper-case T and Z; a day that
# exists in its month; a year from 1970 to 2261, so that the nanoseconds fit
# in 64 bits.
_timestamp(x) if {
	is_string(x)
	regex.match(`^(19[7-9][0-9]|2[01][0-9][0-9]|22[0-5][0-9]|226[01])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`, x)
	substring(x, 8, 2) <= _last_day(to_number(substring(x, 0, 4)), substring(x, 5, 2))
}

# The last day of month ("01" to "12") of year, as two digits.
_last_day(year, month) := "29" if {
	month == "02"
	_leap_year(year)
} else := "28" if {
	month == "02"
} else := "30" if {
	month in {"04", "06", "09", "11"}
} else := "31"

_leap_year(y) if {
	y % 4 == 0
	y % 100 != 0
}

_leap_year(y) if {
	y % 400 == 0
}

# --- results --------------------------------------------------------------------

_approved(id, by) := {
	"status": "OK",
	"message": "two-person approval valid",
	"instructions": [],
	"metadata": {"approval_id": id, "approved_by": by},
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

_forbidden(reason) := _denied(reason, "forbidden")

# error: the response body's fixed error text (never data from the request).
_denied(reason, error) := {
	"status": "POLICY_DENIED",
	"message": reason,
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 403,
		"headers": {},
		"body": concat("", ["{\"error\":\"", error, "\"}"]),
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
