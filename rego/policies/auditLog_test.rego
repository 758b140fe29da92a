package policies.auditLog_test

import rego.v1

import data.policies.auditLog

req_ctx := {
	"route": "/api/v1/admin",
	"phase": "request",
	"request": {"method": "POST", "path": "/api/v1/admin", "headers": {}, "body": {"a": 1}, "client_ip": "10.0.0.1"},
	"state": {"user": "alice"},
}

resp_ctx := object.union(req_ctx, {"phase": "response", "response": {"status_code": 200, "headers": {}, "body": "ok"}})

audit(req, resp) := {
	"status": "OK",
	"message": "audit",
	"instructions": [],
	"metadata": {"audit": "full", "audit_request_body": req, "audit_response_body": resp},
}

is_error(r, msg) if {
	r.status == "POLICY_ERROR"
	r.message == msg
	r.instructions == []
}

test_defaults if {
	auditLog.result(req_ctx, {}) == audit("false", "false")
}

test_log_response_body if {
	auditLog.result(resp_ctx, {"log_response_body": true}) == audit("false", "true")
}

test_log_both_bodies if {
	auditLog.result(req_ctx, {"log_request_body": true, "log_response_body": true}) == audit("true", "true")
}

test_explicit_false if {
	auditLog.result(resp_ctx, {"log_request_body": false, "log_response_body": false}) == audit("false", "false")
}

test_md_not_object if {
	is_error(auditLog.result(req_ctx, true), "invalid metadata: must be an object")
}

test_md_request_body_not_boolean if {
	is_error(auditLog.result(req_ctx, {"log_request_body": "true"}), "invalid metadata: log_request_body must be a boolean")
}

test_md_response_body_not_boolean if {
	is_error(auditLog.result(req_ctx, {"log_response_body": 1}), "invalid metadata: log_response_body must be a boolean")
}

test_md_unknown_field if {
	is_error(auditLog.result(req_ctx, {"level": "full"}), "invalid metadata: unknown field(s) level")
}

test_ctx_not_object if {
	is_error(auditLog.result("x", {}), "malformed context: ctx must be an object")
}
