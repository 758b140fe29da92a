# METADATA
# title: responseBodyTransform
# description: >-
#   Removes fields from a JSON response body. A plain name (no dot) removes
#   that key at every depth (objects nested in objects and arrays); a dotted
#   path a.b.c removes exactly that key path (a segment may be an array index,
#   e.g. items.0.secret). Bodies that are not JSON (strings) are left untouched.
#   When something was removed the new body is returned with SET_BODY.
# custom:
#   version: 1.0.0
#   prepare: true
#   phases: [response]
#   tier: whitelist
#   schema:
#     type: object
#     additionalProperties: false
#     properties:
#       remove_fields:
#         type: array
#         items:
#           type: string
#           minLength: 1
#         default: []
package policies.responseBodyTransform

import rego.v1

# result(ctx, md) is run(ctx, prepare(md)).
result(ctx, md) := run(ctx, prepare(md))

# What run needs from the metadata md, which is the same for every request
# of a route: the chain compiler evaluates it in a rule of its own, computed
# once per program and data (custom.prepare in the METADATA above). "md" is
# the metadata; "names", for metadata with plain field names only (so none
# of _md_error's messages can apply), those names.
prepare(md) := {"md": md, "names": fields} if {
	is_object(md)
	count(object.remove(md, {"remove_fields"})) == 0
	fields := object.get(md, "remove_fields", [])
	is_array(fields)
	every f in fields {
		is_string(f)
		f != ""
		not contains(f, ".")
	}
} else := {"md": md}

# The result for a prepared p (prepare's value). The usual case first: plain
# field names and a context with a response, where _decide's checks all pass
# and it comes to what _transform gives (without sorting the metadata's keys
# or splitting the names).
run(ctx, p) := _named(object.get(response, "body", ""), fields) if {
	fields := p.names
	is_object(ctx)
	response := ctx.response
	is_object(response)
} else := r if {
	r = _decide(ctx, p.md)
} else := _error("responseBodyTransform: evaluation failed")

_decide(ctx, md) := _error(msg) if {
	msg = _md_error(md)
} else := _error(msg) if {
	msg = _ctx_error(ctx)
} else := _transform(_body(ctx), _fields(md))

# The body and the fields are computed once, and the paths (a walk over the
# whole body) once.
_transform(body, fields) := _unchanged("response body is not JSON") if {
	not _is_json(body)
} else := _without(body, removed_paths(body, fields))

# _transform(body, fields) for fields that are all plain names: the walk
# paths that end with one of them (what removed_paths selects; the root's
# path, [], has no last element).
_named(body, fields) := _without(body, {p | walk(body, [p, _]); p[count(p) - 1] in fields}) if {
	_is_json(body)
} else := _unchanged("response body is not JSON")

_without(body, paths) := _unchanged("no fields to remove") if {
	count(paths) == 0
} else := {
	"status": "OK",
	"message": "response body fields removed",
	"instructions": [{
		"type": "SET_BODY",
		"body": remove_paths(body, paths),
	}],
	"metadata": {"removed_fields": format_int(count(paths), 10)},
}

# removed_paths(body, fields): the set of key paths (as walk paths: strings for
# object keys, numbers for array indexes) that the fields select in body.
# (result's first branch selects plain names straight on the walk, _named.)
removed_paths(body, fields) := {p |
	walk(body, [p, _])
	count(p) > 0
	is_string(p[count(p) - 1])
	some f in fields
	_selects(f, p)
}

# A plain name selects the key wherever it appears.
_selects(f, p) if {
	not contains(f, ".")
	p[count(p) - 1] == f
}

# A dotted path selects exactly that path.
_selects(f, p) if {
	contains(f, ".")
	segs = split(f, ".")
	count(segs) == count(p)
	every i, s in segs {
		_segment(p[i]) == s
	}
}

# remove_paths(body, paths): body without the given key paths (each ends
# with an object key). One json.patch "remove" per path, deepest first: a
# set of paths lists a path before the paths under it (in OPA's order and in
# sorted order alike), so the reversed list removes what lies under a path
# before the path itself and every path still exists when it is removed.
# (Array paths are taken segment by segment, array indexes as numbers, in
# OPA and regorus alike.)
remove_paths(body, paths) := json.patch(body, array.reverse([{"op": "remove", "path": p} | some p in paths]))

_segment(x) := x if {
	is_string(x)
} else := format_int(x, 10) if {
	is_number(x)
}

_is_json(body) if is_object(body)

_is_json(body) if is_array(body)

_body(ctx) := object.get(ctx.response, "body", "")

_fields(md) := object.get(md, "remove_fields", [])

_unchanged(reason) := {
	"status": "OK",
	"message": reason,
	"instructions": [],
	"metadata": {},
}

_md_error(md) := "invalid metadata: must be an object" if {
	not is_object(md)
} else := concat("", ["invalid metadata: unknown field(s) ", concat(", ", fs)]) if {
	fs = sort([f | some f, _ in md; f != "remove_fields"])
	count(fs) > 0
} else := "invalid metadata: remove_fields must be an array of non-empty strings" if {
	not is_array(_fields(md))
} else := "invalid metadata: remove_fields must be an array of non-empty strings" if {
	not _all_fields(_fields(md))
}

_all_fields(fields) if {
	every f in fields {
		_field(f)
	}
}

# A name, or a dotted path without empty segments.
_field(f) if {
	is_string(f)
	every s in split(f, ".") {
		s != ""
	}
}

_ctx_error(ctx) := "malformed context: ctx must be an object" if {
	not is_object(ctx)
} else := "malformed context: response must be an object" if {
	not is_object(object.get(ctx, "response", null))
}

_error(msg) := {
	"status": "POLICY_ERROR",
	"message": msg,
	"instructions": [],
	"metadata": {},
}
