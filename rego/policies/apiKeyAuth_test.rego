package policies.apiKeyAuth_test

import rego.v1

import data.policies.apiKeyAuth

# sha256("ak_live_alice_0123456789") and sha256("ak_live_broken_1111"); the
# plaintext keys only appear in the requests below.
fixture_keys := {
	"fb30fc7fc218228c645c9abfc6d292cefde4755042cbf019f40ee5875738b078": {"user_id": "alice", "name": "Alice"},
	"0f1e0c66de355193f9148f0c13628397a797071fe09356abd0e64c9cffe7ac09": {"name": "no user id"},
}

alice_key := "ak_live_alice_0123456789"

mkctx(headers) := {
	"route": "/api/v1/users",
	"phase": "request",
	"request": {
		"method": "GET",
		"path": "/api/v1/users",
		"scheme": "http",
		"authority": "example.com",
		"headers": headers,
		"query_params": {},
		"body": "",
		"client_ip": "10.0.0.1",
	},
	"state": {},
}

eval(headers, md) := r if {
	r := apiKeyAuth.result(mkctx(headers), md) with data.policy_data.apiKeyAuth.keys as fixture_keys
}

denied_401 := {
	"status": "POLICY_DENIED",
	"message": "API key required",
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 401,
		"headers": {"WWW-Authenticate": "API-Key"},
		"body": "{\"error\":\"API key required\"}",
	}],
	"metadata": {},
}

denied_403 := {
	"status": "POLICY_DENIED",
	"message": "Invalid API key",
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 403,
		"headers": {},
		"body": "{\"error\":\"Invalid API key\"}",
	}],
	"metadata": {},
}

ok_alice := {
	"status": "OK",
	"message": "API key valid",
	"instructions": [
		{"type": "SET_HEADER", "key": "X-User-ID", "value": "alice"},
		{"type": "SET_STATE", "key": "user", "value": "alice"},
	],
	"metadata": {"auth_method": "api_key"},
}

# --- allow --------------------------------------------------------------------

test_valid_key_default_header if {
	eval({"x-api-key": alice_key}, {}) == ok_alice
}

test_valid_key_spec_metadata if {
	eval({"x-api-key": alice_key}, {"header_name": "X-API-Key", "required": true}) == ok_alice
}

test_valid_key_custom_header if {
	eval({"x-token": alice_key, "x-api-key": "wrong"}, {"header_name": "X-Token"}) == ok_alice
}

test_valid_key_mixed_case_ctx_header if {
	eval({"X-Api-Key": alice_key}, {}) == ok_alice
}

test_valid_key_sets_header_and_state if {
	r := eval({"x-api-key": alice_key}, {})
	r.status == "OK"
	r.instructions[0] == {"type": "SET_HEADER", "key": "X-User-ID", "value": "alice"}
	r.instructions[1] == {"type": "SET_STATE", "key": "user", "value": "alice"}
	r.metadata == {"auth_method": "api_key"}
}

test_missing_key_not_required if {
	eval({}, {"required": false}) == {
		"status": "OK",
		"message": "no API key provided (optional)",
		"instructions": [],
		"metadata": {},
	}
}

test_empty_key_not_required if {
	r := eval({"x-api-key": ""}, {"required": false})
	r.status == "OK"
	r.instructions == []
}

# An optional key that is present must still be valid.
test_invalid_key_not_required_still_denied if {
	eval({"x-api-key": "nope"}, {"required": false}) == denied_403
}

# --- deny ---------------------------------------------------------------------

test_missing_key_required_default if {
	eval({}, {}) == denied_401
}

test_missing_key_required_explicit if {
	eval({"authorization": "Bearer x"}, {"required": true}) == denied_401
}

test_empty_key_required if {
	eval({"x-api-key": ""}, {}) == denied_401
}

test_key_in_other_header_is_missing if {
	eval({"x-api-key": alice_key}, {"header_name": "X-Other"}) == denied_401
}

test_invalid_key if {
	eval({"x-api-key": "ak_live_mallory"}, {}) == denied_403
}

test_invalid_key_no_data if {
	apiKeyAuth.result(mkctx({"x-api-key": alice_key}), {}) == denied_403
}

test_key_never_leaks if {
	r := eval({"x-api-key": "ak_live_secret_value_42"}, {})
	r == denied_403
	not contains(json.marshal(r), "ak_live_secret_value_42")
	ok := eval({"x-api-key": alice_key}, {})
	not contains(json.marshal(ok), alice_key)
}

# --- errors -------------------------------------------------------------------

test_md_not_object if {
	r := eval({"x-api-key": alice_key}, "X-API-Key")
	r.status == "POLICY_ERROR"
	r.message == "invalid metadata: must be an object"
	r.instructions == []
}

test_md_bad_required_type if {
	r := eval({"x-api-key": alice_key}, {"required": "true"})
	r.status == "POLICY_ERROR"
	r.message == "invalid metadata: required must be a boolean"
	r.instructions == []
}

test_md_bad_header_name if {
	r := eval({"x-api-key": alice_key}, {"header_name": 7})
	r.status == "POLICY_ERROR"
	r.message == "invalid metadata: header_name must be a non-empty string"
}

test_md_empty_header_name if {
	r := eval({"x-api-key": alice_key}, {"header_name": ""})
	r.status == "POLICY_ERROR"
	r.message == "invalid metadata: header_name must be a non-empty string"
}

test_md_unknown_field if {
	r := eval({"x-api-key": alice_key}, {"header": "X-API-Key", "extra": 1})
	r.status == "POLICY_ERROR"
	r.message == "invalid metadata: unknown field(s) extra, header"
}

test_ctx_missing_headers if {
	r := apiKeyAuth.result({"route": "/", "request": {"method": "GET"}}, {})
	r.status == "POLICY_ERROR"
	r.message == "malformed context: request.headers must be an object"
	r.instructions == []
}

test_ctx_missing_request if {
	r := apiKeyAuth.result({"route": "/"}, {})
	r.status == "POLICY_ERROR"
	r.message == "malformed context: request must be an object"
}

test_ctx_not_object if {
	r := apiKeyAuth.result(null, {})
	r.status == "POLICY_ERROR"
	r.message == "malformed context: ctx must be an object"
}

test_ctx_non_string_header if {
	r := eval({"x-api-key": ["a", "b"]}, {})
	r.status == "POLICY_ERROR"
	r.message == "malformed context: header x-api-key must be a string"
}

test_data_keys_not_object if {
	r := apiKeyAuth.result(mkctx({"x-api-key": alice_key}), {}) with data.policy_data.apiKeyAuth.keys as ["x"]
	r.status == "POLICY_ERROR"
	r.message == "policy data: apiKeyAuth.keys must be an object"
}

test_data_entry_without_user_id if {
	r := eval({"x-api-key": "ak_live_broken_1111"}, {})
	r.status == "POLICY_ERROR"
	r.message == "policy data: API key entry has no valid user_id"
	r.instructions == []
}
