package policies.platformAdmin_test

import rego.v1

import data.policies.platformAdmin

mkctx(state) := {
	"route": "/api/v1/platform",
	"phase": "request",
	"request": {
		"method": "POST",
		"path": "/api/v1/platform/restart",
		"scheme": "http",
		"authority": "example.com",
		"headers": {},
		"query_params": {},
		"body": "",
		"client_ip": "10.0.0.1",
	},
	"state": state,
}

fixture_synced := {
	"platform_admins": ["root", "alice", 7, ""],
	"role_bindings": {"bob": ["admin"]},
	"command_whitelists": {},
	"approvals": {},
}

run(state, md) := r if {
	r := platformAdmin.result(mkctx(state), md) with data.synced as fixture_synced
}

allowed(user) := {
	"status": "OK",
	"message": "caller is a platform admin",
	"instructions": [],
	"metadata": {"platform_admin": user},
}

unauthenticated := {
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

forbidden := {
	"status": "POLICY_DENIED",
	"message": "platform admin required",
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 403,
		"headers": {},
		"body": "{\"error\":\"forbidden\"}",
	}],
	"metadata": {},
}

is_error(r, msg) if {
	r.status == "POLICY_ERROR"
	r.message == msg
	r.instructions == []
	r.metadata == {}
}

# --- allow --------------------------------------------------------------------

test_admin_by_state_user if {
	run({"user": "alice"}, {}) == allowed("alice")
}

test_admin_by_claims_sub if {
	run({"claims": {"sub": "root", "roles": []}}, {}) == allowed("root")
}

test_state_user_preferred_over_sub if {
	run({"user": "root", "claims": {"sub": "bob"}}, {}) == allowed("root")
	run({"user": "bob", "claims": {"sub": "root"}}, {}) == forbidden
}

test_empty_state_user_falls_back_to_sub if {
	run({"user": "", "claims": {"sub": "alice"}}, {}) == allowed("alice")
}

test_non_string_state_user_falls_back_to_sub if {
	run({"user": 7, "claims": {"sub": "alice"}}, {}) == allowed("alice")
}

# --- deny ---------------------------------------------------------------------

test_not_admin if {
	run({"user": "bob"}, {}) == forbidden
}

test_role_binding_does_not_make_admin if {
	run({"user": "bob", "claims": {"sub": "bob", "roles": ["admin"]}}, {}) == forbidden
}

test_admin_match_is_exact if {
	run({"user": "Alice"}, {}) == forbidden
	run({"user": "alice "}, {}) == forbidden
}

test_no_user if {
	run({}, {}) == unauthenticated
}

test_no_state if {
	r := platformAdmin.result({"route": "/", "request": {"headers": {}}}, {}) with data.synced as fixture_synced
	r == unauthenticated
}

test_empty_user_and_sub if {
	run({"user": "", "claims": {"sub": ""}}, {}) == unauthenticated
}

test_non_string_sub_is_no_user if {
	run({"claims": {"sub": 7}}, {}) == unauthenticated
}

test_no_synced_data if {
	platformAdmin.result(mkctx({"user": "alice"}), {}) == forbidden
}

test_synced_without_admins if {
	r := platformAdmin.result(mkctx({"user": "alice"}), {}) with data.synced as {"role_bindings": {"alice": ["admin"]}}
	r == forbidden
}

test_no_user_without_data if {
	platformAdmin.result(mkctx({}), {}) == unauthenticated
}

# --- errors -------------------------------------------------------------------

test_md_not_object if {
	is_error(run({"user": "alice"}, null), "invalid metadata: must be an object")
	is_error(run({"user": "alice"}, []), "invalid metadata: must be an object")
}

test_md_unknown_field if {
	is_error(run({"user": "alice"}, {"role": "admin", "admins": ["alice"]}), "invalid metadata: unknown field(s) admins, role")
}

test_ctx_not_object if {
	r := platformAdmin.result("alice", {}) with data.synced as fixture_synced
	is_error(r, "malformed context: ctx must be an object")
}

test_ctx_bad_state if {
	r := platformAdmin.result({"state": "alice"}, {}) with data.synced as fixture_synced
	is_error(r, "malformed context: state must be an object")
}

test_ctx_bad_claims if {
	is_error(run({"user": "alice", "claims": ["root"]}, {}), "malformed context: state.claims must be an object")
}

test_data_synced_not_object if {
	r := platformAdmin.result(mkctx({"user": "alice"}), {}) with data.synced as "alice"
	is_error(r, "policy data: synced must be an object")
}

test_data_admins_not_array if {
	r := platformAdmin.result(mkctx({"user": "alice"}), {}) with data.synced as {"platform_admins": {"alice": true}}
	is_error(r, "policy data: synced.platform_admins must be an array")
	r2 := platformAdmin.result(mkctx({"user": "alice"}), {}) with data.synced as {"platform_admins": "alice"}
	is_error(r2, "policy data: synced.platform_admins must be an array")
}

test_data_error_before_no_user if {
	r := platformAdmin.result(mkctx({}), {}) with data.synced as {"platform_admins": null}
	is_error(r, "policy data: synced.platform_admins must be an array")
}

test_md_error_before_ctx_error if {
	r := platformAdmin.result(null, {"x": 1}) with data.synced as fixture_synced
	is_error(r, "invalid metadata: unknown field(s) x")
}
