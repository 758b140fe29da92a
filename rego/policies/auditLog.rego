# METADATA
# title: auditLog
# description: >-
#   Marks the exchange for full audit logging. Returns OK with metadata
#   audit=full and whether the request and response bodies are to be logged.
# custom:
#   version: 1.0.0
#   phases: [request, response]
#   tier: whitelist
#   schema:
#     type: object
#     additionalProperties: false
#     properties:
#       log_request_body:
#         type: boolean
#         default: false
#       log_response_body:
#         type: boolean
#         default: false
package policies.auditLog

import rego.v1

# The first branch is the usual case: metadata of the schema's shape and an
# object context, checked in one body (so none of the error messages of
# _decide can apply).
result(ctx, md) := {
	"status": "OK",
	"message": "audit",
	"instructions": [],
	"metadata": {
		"audit": "full",
		"audit_request_body": request_body,
		"audit_response_body": response_body,
	},
} if {
	is_object(md)
	count(object.remove(md, {"log_request_body", "log_response_body"})) == 0
	request_body := {true: "true", false: "false"}[object.get(md, "log_request_body", false)]
	response_body := {true: "true", false: "false"}[object.get(md, "log_response_body", false)]
	is_object(ctx)
} else := r if {
	r = _decide(ctx, md)
} else := _error("auditLog: evaluation failed")

_decide(ctx, md) := _error(msg) if {
	msg = _md_error(md)
} else := _error("malformed context: ctx must be an object") if {
	not is_object(ctx)
} else := {
	"status": "OK",
	"message": "audit",
	"instructions": [],
	"metadata": {
		"audit": "full",
		"audit_request_body": _bool_string(object.get(md, "log_request_body", false)),
		"audit_response_body": _bool_string(object.get(md, "log_response_body", false)),
	},
}

_bool_string(true) := "true"

_bool_string(false) := "false"

_md_error(md) := "invalid metadata: must be an object" if {
	not is_object(md)
} else := concat("", ["invalid metadata: unknown field(s) ", concat(", ", fs)]) if {
	fs = sort([f | some f, _ in md; not f in {"log_request_body", "log_response_body"}])
	count(fs) > 0
} else := "invalid metadata: log_request_body must be a boolean" if {
	not is_boolean(object.get(md, "log_request_body", false))
} else := "invalid metadata: log_response_body must be a boolean" if {
	not is_boolean(object.get(md, "log_response_body", false))
}

_error(msg) := {
	"status": "POLICY_ERROR",
	"message": msg,
	"instructions": [],
	"metadata": {},
}
