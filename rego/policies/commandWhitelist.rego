# METADATA
# title: commandWhitelist
# description: >-
#   Allows a request only when its command is listed in a named command
#   whitelist of the synced data (data.synced.command_whitelists[<whitelist>],
#   an array of commands, compared exactly). The command is read from a request
#   header (source "header:<name>", default header x-command) or from a
#   top-level string field of the JSON request body (source "body:<field>").
#   A missing command is answered with 400 and a command that is not listed
#   with 403; the command itself never appears in the response body.
# custom:
#   version: 1.0.0
#   phases: [request]
#   tier: whitelist
#   schema:
#     type: object
#     additionalProperties: false
#     required: [whitelist]
#     properties:
#       whitelist:
#         type: string
#         minLength: 1
#         description: name of the list in data.synced.command_whitelists
#       source:
#         type: string
#         pattern: "^(header|body):.+$"
#         default: "header:x-command"
#         description: where the command is read, header:<name> or body:<field>
package policies.commandWhitelist

import rego.v1

# result(ctx, md) is total: every branch ends in a result object, and the final
# else turns anything unforeseen into POLICY_ERROR.
#
# The first branch is the usual request: metadata of the schema's shape and a
# well-formed context and data, with the named whitelist present, checked in
# one body (so none of the error messages below can apply); _verdict then only
# looks at the command. Any other input goes through _decide, which checks
# everything in order and reports the first problem.
result(ctx, md) := r if {
	is_object(md)
	count(object.remove(md, {"whitelist", "source"})) == 0
	name := md.whitelist
	_nonempty_string(name)
	source := _source(object.get(md, "source", "header:x-command"))
	is_object(ctx)
	request := ctx.request
	is_object(request)
	is_object(request.headers)
	is_object(_synced_raw)
	whitelists := _whitelists_raw
	is_object(whitelists)
	list := whitelists[name]
	is_array(list)
	r := _verdict(name, source, request, list)
} else := r if {
	r = _decide(ctx, md)
} else := _error("commandWhitelist: evaluation failed")

_decide(ctx, md) := _error(msg) if {
	msg = _md_error(md)
} else := _error(msg) if {
	msg = _ctx_error(ctx)
} else := _error(msg) if {
	msg = _data_error(md)
} else := _verdict(md.whitelist, _source(_source_spec(md)), ctx.request, object.get(_whitelists, md.whitelist, null))

# The result for valid metadata, context and data; list is the named
# whitelist, or null when there is none of that name. The first branch is the
# usual allow: the command is a string listed exactly.
_verdict(name, source, request, list) := _allowed(name) if {
	cmd := _command(source, request)
	is_string(cmd)
	cmd in list
} else := _with_command(name, source, list, cmd) if {
	cmd = _command(source, request)
} else := _missing(source)

# cmd: the value found where the command is read from.
_with_command(name, source, list, cmd) := _error(concat("", ["malformed context: header ", source[1], " must be a string"])) if {
	source[0] == "header"
	not is_string(cmd)
} else := _bad_request(concat("", ["command in ", _where(source), " must be a string"])) if {
	not is_string(cmd)
} else := _missing(source) if {
	cmd == ""
} else := _not_allowed(concat("", ["unknown command whitelist ", name])) if {
	list == null
} else := _not_allowed(concat("", ["command not allowed by whitelist ", name, ": ", cmd]))

# The command: the header's value, or the body field's value when the body is
# a JSON object; undefined when absent.
_command(source, request) := v if {
	source[0] == "header"
	v = _header(request.headers, source[1])
} else := v if {
	source[0] == "body"
	body := object.get(request, "body", null)
	is_object(body)
	v = body[source[1]]
}

# Header names in ctx are lower-case; an exact lower-case match wins, otherwise
# a single case-insensitive match is accepted (several are treated as absent).
_header(headers, name) := v if {
	v = headers[name]
} else := v if {
	vs = [x | some k, x in headers; is_string(k); lower(k) == name]
	count(vs) == 1
	v = vs[0]
}

_where(source) := concat("", ["header ", source[1]]) if {
	source[0] == "header"
} else := concat("", ["body field ", source[1]])

# --- metadata -------------------------------------------------------------------

_source_spec(md) := object.get(md, "source", "header:x-command")

# ["header", <lower-case name>] or ["body", <field>]; undefined when invalid.
_source(spec) := ["header", lower(h)] if {
	is_string(spec)
	startswith(spec, "header:")
	h := trim_prefix(spec, "header:")
	h != ""
} else := ["body", f] if {
	is_string(spec)
	startswith(spec, "body:")
	f := trim_prefix(spec, "body:")
	f != ""
}

_md_error(md) := "invalid metadata: must be an object" if {
	not is_object(md)
} else := concat("", ["invalid metadata: unknown field(s) ", concat(", ", fs)]) if {
	fs = sort([f | some f, _ in md; not f in {"whitelist", "source"}])
	count(fs) > 0
} else := "invalid metadata: whitelist must be a non-empty string" if {
	not _nonempty_string(object.get(md, "whitelist", null))
} else := "invalid metadata: source must be header:<name> or body:<field>" if {
	not _source(_source_spec(md))
}

# --- context and data -------------------------------------------------------------

_ctx_error(ctx) := "malformed context: ctx must be an object" if {
	not is_object(ctx)
} else := "malformed context: request must be an object" if {
	not is_object(object.get(ctx, "request", null))
} else := "malformed context: request.headers must be an object" if {
	not is_object(object.get(ctx.request, "headers", null))
}

# data.synced may be absent (no sections); a present section must have its type.
_synced_raw := s if {
	s = data.synced
} else := {}

_whitelists_raw := w if {
	w = data.synced.command_whitelists
} else := {}

_whitelists := w if {
	w = _whitelists_raw
	is_object(w)
} else := {}

_data_error(md) := "policy data: synced must be an object" if {
	not is_object(_synced_raw)
} else := "policy data: synced.command_whitelists must be an object" if {
	not is_object(_whitelists_raw)
} else := concat("", ["policy data: synced.command_whitelists.", md.whitelist, " must be an array"]) if {
	list = _whitelists[md.whitelist]
	not is_array(list)
}

# --- results --------------------------------------------------------------------

_allowed(name) := {
	"status": "OK",
	"message": "command allowed",
	"instructions": [],
	"metadata": {"command_whitelist": name},
}

_missing(source) := _bad_request(concat("", ["command required in ", _where(source)]))

_bad_request(reason) := {
	"status": "POLICY_DENIED",
	"message": reason,
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 400,
		"headers": {},
		"body": "{\"error\":\"command required\"}",
	}],
	"metadata": {},
}

_not_allowed(reason) := {
	"status": "POLICY_DENIED",
	"message": reason,
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 403,
		"headers": {},
		"body": "{\"error\":\"command not allowed\"}",
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
