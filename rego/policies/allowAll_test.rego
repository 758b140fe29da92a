package policies.allowAll_test

import rego.v1

import data.policies.allowAll

allowed := {
	"status": "OK",
	"message": "allowed",
	"instructions": [],
	"metadata": {},
}

test_allows_request if {
	allowAll.result({"route": "/x", "phase": "request", "request": {"method": "GET", "headers": {}}}, {}) == allowed
}

test_allows_response if {
	allowAll.result({"route": "/x", "phase": "response", "response": {"status_code": 500}}, {}) == allowed
}

test_allows_any_context if {
	allowAll.result(null, {}) == allowed
	allowAll.result({}, {}) == allowed
}

test_md_not_object if {
	allowAll.result({}, "yes") == {
		"status": "POLICY_ERROR",
		"message": "invalid metadata: must be an object",
		"instructions": [],
		"metadata": {},
	}
}

test_md_unknown_field if {
	r := allowAll.result({}, {"b": 1, "a": 2})
	r.status == "POLICY_ERROR"
	r.message == "invalid metadata: unknown field(s) a, b"
	r.instructions == []
}
