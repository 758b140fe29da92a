# METADATA
# title: allowAll
# description: Allows every request and response (no instructions).
# custom:
#   version: 1.0.0
#   phases: [request, response]
#   tier: whitelist
#   schema:
#     type: object
#     additionalProperties: false
#     properties: {}
package policies.allowAll

import rego.v1

# Metadata {} (the usual case) has no error; otherwise _md_error decides.
result(ctx, md) := {
	"status": "OK",
	"message": "allowed",
	"instructions": [],
	"metadata": {},
} if {
	md == {}
} else := {
	"status": "POLICY_ERROR",
	"message": msg,
	"instructions": [],
	"metadata": {},
} if {
	msg = _md_error(md)
} else := {
	"status": "OK",
	"message": "allowed",
	"instructions": [],
	"metadata": {},
}

_md_error(md) := "invalid metadata: must be an object" if {
	not is_object(md)
} else := concat("", ["invalid metadata: unknown field(s) ", concat(", ", fs)]) if {
	fs = sort([f | some f, _ in md])
	count(fs) > 0
}
