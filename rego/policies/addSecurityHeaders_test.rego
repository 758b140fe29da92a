package policies.addSecurityHeaders_test

import rego.v1

import data.policies.addSecurityHeaders

ctx := {
	"route": "/api/v1/users",
	"phase": "response",
	"request": {"method": "GET", "path": "/api/v1/users", "headers": {}, "client_ip": "10.0.0.1"},
	"response": {"status_code": 200, "headers": {"content-type": "application/json"}, "body": {"id": 1}},
	"state": {},
}

is_error(r, msg) if {
	r.status == "POLICY_ERROR"
	r.message == msg
	r.instructions == []
}

test_default_headers_sorted if {
	addSecurityHeaders.result(ctx, {}) == {
		"status": "OK",
		"message": "security headers added",
		"instructions": [
			{"type": "SET_HEADER", "key": "Referrer-Policy", "value": "no-referrer"},
			{"type": "SET_HEADER", "key": "Strict-Transport-Security", "value": "max-age=31536000; includeSubDomains"},
			{"type": "SET_HEADER", "key": "X-Content-Type-Options", "value": "nosniff"},
			{"type": "SET_HEADER", "key": "X-Frame-Options", "value": "DENY"},
		],
		"metadata": {},
	}
}

test_custom_headers_replace_defaults if {
	md := {"headers": {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}}
	addSecurityHeaders.result(ctx, md) == {
		"status": "OK",
		"message": "security headers added",
		"instructions": [
			{"type": "SET_HEADER", "key": "X-Content-Type-Options", "value": "nosniff"},
			{"type": "SET_HEADER", "key": "X-Frame-Options", "value": "DENY"},
		],
		"metadata": {},
	}
}

test_custom_header_order_is_sorted if {
	md := {"headers": {"b-header": "2", "A-Header": "1", "c-header": "3"}}
	r := addSecurityHeaders.result(ctx, md)
	[i.key | some i in r.instructions] == ["A-Header", "b-header", "c-header"]
	[i.value | some i in r.instructions] == ["1", "2", "3"]
}

test_empty_headers_no_instructions if {
	addSecurityHeaders.result(ctx, {"headers": {}}) == {
		"status": "OK",
		"message": "security headers added",
		"instructions": [],
		"metadata": {},
	}
}

test_works_without_response_details if {
	r := addSecurityHeaders.result({"route": "/"}, {"headers": {"X-Frame-Options": "SAMEORIGIN"}})
	r.status == "OK"
	r.instructions == [{"type": "SET_HEADER", "key": "X-Frame-Options", "value": "SAMEORIGIN"}]
}

test_md_not_object if {
	is_error(addSecurityHeaders.result(ctx, "nosniff"), "invalid metadata: must be an object")
}

test_md_headers_not_object if {
	is_error(addSecurityHeaders.result(ctx, {"headers": ["X-Frame-Options"]}), "invalid metadata: headers must be an object")
}

test_md_header_value_not_string if {
	is_error(addSecurityHeaders.result(ctx, {"headers": {"X-Frame-Options": true}}), "invalid metadata: header values must be strings without line breaks")
}

test_md_header_value_injection if {
	is_error(addSecurityHeaders.result(ctx, {"headers": {"X-A": "1\r\nSet-Cookie: x=y"}}), "invalid metadata: header values must be strings without line breaks")
}

test_md_bad_header_name if {
	is_error(addSecurityHeaders.result(ctx, {"headers": {"X Frame": "DENY"}}), "invalid metadata: header names must be non-empty strings without spaces")
	is_error(addSecurityHeaders.result(ctx, {"headers": {"": "DENY"}}), "invalid metadata: header names must be non-empty strings without spaces")
}

test_md_unknown_field if {
	is_error(addSecurityHeaders.result(ctx, {"X-Frame-Options": "DENY"}), "invalid metadata: unknown field(s) X-Frame-Options")
}

test_ctx_not_object if {
	is_error(addSecurityHeaders.result(null, {}), "malformed context: ctx must be an object")
}
