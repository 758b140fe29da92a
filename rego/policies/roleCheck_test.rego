package policies.roleCheck_test

import rego.v1

import data.policies.roleCheck

mkctx(state) := {
	"route": "/api/v1/admin",
	"phase": "request",
	"request": {
		"method": "GET",
		"path": "/api/v1/admin",
		"scheme": "http",
		"authority": "example.com",
		"headers": {},
		"query_params": {},
		"body": "",
		"client_ip": "10.0.0.1",
	},
	"state": state,
}

fixture_bindings := {
	"alice": ["admin"],
	"bob": ["reader", "auditor"],
	"eve": "admin",
}

run(state, md) := r if {
	r := roleCheck.result(mkctx(state), md) with data.policy_data.roleCheck.bindings as fixture_bindings
}

allowed := {
	"status": "OK",
	"message": "required roles present",
	"instructions": [],
	"metadata": {},
}

forbidden(reason) := {
	"status": "POLICY_DENIED",
	"message": reason,
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
}

# --- claims ------------------------------------------------------------------------

test_any_claim_array if {
	run({"claims": {"sub": "carol", "roles": ["admin", "reader"]}}, {"required_roles": ["admin"]}) == allowed
}

test_any_one_of_several if {
	run({"claims": {"sub": "carol", "roles": ["reader"]}}, {"required_roles": ["admin", "reader"], "match": "any"}) == allowed
}

test_any_claim_space_separated_string if {
	run({"claims": {"sub": "carol", "roles": "reader  admin"}}, {"required_roles": ["admin"]}) == allowed
}

test_custom_roles_claim if {
	run({"claims": {"sub": "carol", "groups": ["ops"]}}, {"required_roles": ["ops"], "roles_claim": "groups"}) == allowed
}

test_scope_claim_string if {
	run({"claims": {"sub": "carol", "scope": "read:users write:users"}}, {"required_roles": ["write:users"], "roles_claim": "scope"}) == allowed
}

test_nested_roles_claim_path if {
	claims := {"sub": "carol", "realm_access": {"roles": ["admin"]}}
	run({"claims": claims}, {"required_roles": ["admin"], "roles_claim": "realm_access.roles"}) == allowed
}

test_dotted_claim_name_exact_match_wins if {
	claims := {"sub": "carol", "https://example.com/roles": ["admin"]}
	run({"claims": claims}, {"required_roles": ["admin"], "roles_claim": "https://example.com/roles"}) == allowed
}

test_all_present if {
	run({"claims": {"sub": "carol", "roles": ["admin", "reader", "x"]}}, {"required_roles": ["reader", "admin"], "match": "all"}) == allowed
}

# --- bindings ----------------------------------------------------------------------

test_binding_for_state_user if {
	run({"user": "alice"}, {"required_roles": ["admin"]}) == allowed
}

test_binding_for_claims_sub if {
	run({"claims": {"sub": "alice"}}, {"required_roles": ["admin"]}) == allowed
}

test_state_user_preferred_over_sub if {
	run({"user": "bob", "claims": {"sub": "alice"}}, {"required_roles": ["admin"]}) == forbidden("requires one of the roles: admin")
}

test_all_from_claims_and_bindings_union if {
	run({"user": "bob", "claims": {"sub": "bob", "roles": ["admin"]}}, {"required_roles": ["admin", "auditor"], "match": "all"}) == allowed
}

test_malformed_binding_ignored if {
	run({"user": "eve"}, {"required_roles": ["admin"]}) == forbidden("requires one of the roles: admin")
}

test_binding_synced_from_the_journal if {
	r := roleCheck.result(mkctx({"user": "carol"}), {"required_roles": ["approver"]}) with data.synced.role_bindings as {"carol": ["approver"]}
	r == allowed
}

test_bindings_of_both_sources_are_united if {
	r := roleCheck.result(mkctx({"user": "bob"}), {"required_roles": ["auditor", "approver"], "match": "all"}) with data.policy_data.roleCheck.bindings as fixture_bindings
		with data.synced.role_bindings as {"bob": ["approver"]}
	r == allowed
}

test_synced_bindings_of_another_user_do_not_count if {
	r := roleCheck.result(mkctx({"user": "bob"}), {"required_roles": ["approver"]}) with data.synced.role_bindings as {"carol": ["approver"], "bob": "approver"}
	r == forbidden("requires one of the roles: approver")
}

test_synced_bindings_not_object if {
	r := roleCheck.result(mkctx({"user": "alice"}), {"required_roles": ["admin"]}) with data.synced.role_bindings as ["alice"]
	is_error(r, "policy data: synced.role_bindings must be an object")
}

test_no_binding_data if {
	r := roleCheck.result(mkctx({"user": "alice"}), {"required_roles": ["admin"]})
	r == forbidden("requires one of the roles: admin")
}

# --- deny --------------------------------------------------------------------------

test_any_missing if {
	run({"claims": {"sub": "carol", "roles": ["reader"]}}, {"required_roles": ["admin"]}) == forbidden("requires one of the roles: admin")
}

test_any_missing_lists_all_candidates_sorted if {
	r := run({"claims": {"sub": "carol", "roles": ["x"]}}, {"required_roles": ["ops", "admin"]})
	r == forbidden("requires one of the roles: admin, ops")
	r.instructions[0].status_code == 403
}

test_all_missing_names_missing_roles if {
	r := run({"claims": {"sub": "carol", "roles": ["reader"]}}, {"required_roles": ["reader", "ops", "admin"], "match": "all"})
	r == forbidden("missing required role(s): admin, ops")
}

test_no_claims_no_user if {
	run({}, {"required_roles": ["admin"]}) == forbidden("requires one of the roles: admin")
}

test_no_state_at_all if {
	r := roleCheck.result({"route": "/r", "request": {"headers": {}}}, {"required_roles": ["admin"]})
	r == forbidden("requires one of the roles: admin")
}

test_roles_claim_wrong_type_has_no_roles if {
	run({"claims": {"sub": "carol", "roles": {"admin": true}}}, {"required_roles": ["admin"]}) == forbidden("requires one of the roles: admin")
}

test_roles_are_case_sensitive if {
	run({"claims": {"sub": "carol", "roles": ["Admin"]}}, {"required_roles": ["admin"]}) == forbidden("requires one of the roles: admin")
}

# --- pure helpers -----------------------------------------------------------------

test_missing_roles_helper if {
	roleCheck.missing_roles({"a"}, ["a", "b"], "any") == []
	roleCheck.missing_roles({"c"}, ["b", "a"], "any") == ["a", "b"]
	roleCheck.missing_roles({"a"}, ["a", "b"], "all") == ["b"]
	roleCheck.missing_roles({"a", "b"}, ["a", "b"], "all") == []
}

# --- errors ------------------------------------------------------------------------

test_md_not_object if {
	is_error(run({}, ["admin"]), "invalid metadata: must be an object")
}

test_md_missing_required_roles if {
	is_error(run({}, {}), "invalid metadata: required_roles must be a non-empty array of non-empty strings")
}

test_md_empty_required_roles if {
	is_error(run({}, {"required_roles": []}), "invalid metadata: required_roles must be a non-empty array of non-empty strings")
}

test_md_required_roles_not_strings if {
	is_error(run({}, {"required_roles": ["admin", 1]}), "invalid metadata: required_roles must be a non-empty array of non-empty strings")
	is_error(run({}, {"required_roles": "admin"}), "invalid metadata: required_roles must be a non-empty array of non-empty strings")
}

test_md_bad_match if {
	is_error(run({}, {"required_roles": ["admin"], "match": "some"}), "invalid metadata: match must be any or all")
}

test_md_bad_roles_claim if {
	is_error(run({}, {"required_roles": ["admin"], "roles_claim": ""}), "invalid metadata: roles_claim must be a non-empty string")
}

test_md_unknown_field if {
	is_error(run({}, {"required_roles": ["admin"], "roles": ["x"]}), "invalid metadata: unknown field(s) roles")
}

test_ctx_not_object if {
	is_error(roleCheck.result("ctx", {"required_roles": ["admin"]}), "malformed context: ctx must be an object")
}

test_ctx_bad_state if {
	is_error(roleCheck.result({"state": []}, {"required_roles": ["admin"]}), "malformed context: state must be an object")
}

test_ctx_bad_claims if {
	is_error(run({"claims": "admin"}, {"required_roles": ["admin"]}), "malformed context: state.claims must be an object")
}

test_data_bindings_not_object if {
	r := roleCheck.result(mkctx({"user": "alice"}), {"required_roles": ["admin"]}) with data.policy_data.roleCheck.bindings as ["alice"]
	is_error(r, "policy data: roleCheck.bindings must be an object")
}
