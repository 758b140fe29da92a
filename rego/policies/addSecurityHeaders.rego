# METADATA
# title: addSecurityHeaders
# description: >-
#   Adds security headers to the response (SET_HEADER, in sorted header-name
#   order). The configured headers replace the default set.
# custom:
#   version: 1.0.0
#   prepare: true
#   phases: [response]
#   tier: whitelist
#   schema:
#     type: object
#     additionalProperties: false
#     properties:
#       headers:
#         type: object
#         additionalProperties:
#           type: string
#         default:
#           Referrer-Policy: no-referrer
#           Strict-Transport-Security: "max-age=31536000; includeSubDomains"
#           X-Content-Type-Options: nosniff
#           X-Frame-Options: DENY
package policies.addSecurityHeaders

import rego.v1

default_headers := {
	"Referrer-Policy": "no-referrer",
	"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
	"X-Content-Type-Options": "nosniff",
	"X-Frame-Options": "DENY",
}

# result(ctx, md) is run(ctx, prepare(md)).
result(ctx, md) := run(ctx, prepare(md))

# What run needs from the metadata md, which is the same for every request
# of a route: the chain compiler evaluates it in a rule of its own, computed
# once per program and data (custom.prepare in the METADATA above). "md" is
# the metadata; "result", for no metadata (the default headers) or metadata
# of the schema's shape (each header checked as _md_error checks it, so
# none of its error messages can apply), the policy's result, which depends
# on the metadata alone.
prepare(md) := {"md": md, "result": _set_headers(default_headers)} if {
	md == {}
} else := {"md": md, "result": _set_headers(headers)} if {
	is_object(md)
	count(object.remove(md, {"headers"})) == 0
	headers := object.get(md, "headers", default_headers)
	is_object(headers)
	every k, v in headers {
		# _header_name(k) and _header_value(v), written out to save two
		# calls per header.
		is_string(k)
		regex.match(_name_pattern, k)
		is_string(v)
		not contains(v, "\n")
		not contains(v, "\r")
	}
} else := {"md": md}

# The result for a prepared p (prepare's value): the prepared result for a
# well-formed context; _decide reports the first problem otherwise.
run(ctx, p) := r if {
	r := p.result
	is_object(ctx)
} else := r if {
	r = _decide(ctx, p.md)
} else := _error("addSecurityHeaders: evaluation failed")

_decide(ctx, md) := _error(msg) if {
	msg = _md_error(md)
} else := _error("malformed context: ctx must be an object") if {
	not is_object(ctx)
} else := _set_headers(_headers(md))

# SET_HEADER instructions for headers, in sorted header-name order.
_set_headers(headers) := {
	"status": "OK",
	"message": "security headers added",
	"instructions": [{"type": "SET_HEADER", "key": k, "value": headers[k]} |
		some k in sort(object.keys(headers))
	],
	"metadata": {},
}

_headers(md) := object.get(md, "headers", default_headers)

_md_error(md) := "invalid metadata: must be an object" if {
	not is_object(md)
} else := concat("", ["invalid metadata: unknown field(s) ", concat(", ", fs)]) if {
	fs = sort([f | some f, _ in md; f != "headers"])
	count(fs) > 0
} else := "invalid metadata: headers must be an object" if {
	not is_object(_headers(md))
} else := "invalid metadata: header names must be non-empty strings without spaces" if {
	not _all_names(_headers(md))
} else := "invalid metadata: header values must be strings without line breaks" if {
	not _all_values(_headers(md))
}

_all_names(headers) if {
	every k in object.keys(headers) {
		_header_name(k)
	}
}

_all_values(headers) if {
	every k in object.keys(headers) {
		_header_value(headers[k])
	}
}

_header_name(k) if {
	is_string(k)
	regex.match(_name_pattern, k)
}

# A header name: one or more token characters (RFC 9110).
_name_pattern := `^[!#$%&'*+.^_|~0-9A-Za-z-]+$`

_header_value(v) if {
	is_string(v)
	not contains(v, "\n")
	not contains(v, "\r")
}

_error(msg) := {
	"status": "POLICY_ERROR",
	"message": msg,
	"instructions": [],
	"metadata": {},
}
