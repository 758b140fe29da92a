package policies.twoPersonApproval_test

import rego.v1

import data.policies.twoPersonApproval

# 2026-01-01T00:00:00Z: time.now_ns is fixed to this in every test.
now_ns := 1767225600000000000

mkctx(headers, state) := {
	"route": "/api/v1/db",
	"phase": "request",
	"request": {
		"method": "DELETE",
		"path": "/api/v1/db/orders",
		"scheme": "http",
		"authority": "example.com",
		"headers": headers,
		"query_params": {},
		"body": "",
		"client_ip": "10.0.0.1",
	},
	"state": state,
}

approval(changes) := object.union(
	{
		"operation": "db.drop",
		"requested_by": "alice",
		"approved_by": "bob",
		"approver_roles": ["dba", "sre"],
		"expires_at": "2026-01-01T01:00:00Z",
	},
	changes,
)

fixture_synced := {
	"role_bindings": {
		"alice": ["dba"],
		"bob": ["dba", "sre"],
		"carol": ["reader"],
		"dave": ["sre"],
		"eve": "dba",
	},
	"approvals": {
		"ap-1": approval({}),
		"ap-other-op": approval({"operation": "db.restore"}),
		"ap-by-carol": approval({"requested_by": "carol"}),
		"ap-self": approval({"approved_by": "alice"}),
		"ap-approver-no-role": approval({"approved_by": "carol", "approver_roles": ["dba"]}),
		"ap-approver-unbound": approval({"approved_by": "frank"}),
		"ap-approver-binding-malformed": approval({"approved_by": "eve"}),
		"ap-role-not-in-approval": approval({"approver_roles": ["sre"]}),
		"ap-approval-roles-only": approval({"approved_by": "dave", "approver_roles": ["dba"]}),
		"ap-expired": approval({"expires_at": "2025-12-31T23:59:59Z"}),
		"ap-expires-now": approval({"expires_at": "2026-01-01T00:00:00Z"}),
		"ap-expires-next-ns": approval({"expires_at": "2026-01-01T00:00:00.000000001Z"}),
		"ap-offset": approval({"expires_at": "2026-01-01T00:30:00+01:00"}),
		"ap-offset-future": approval({"expires_at": "2026-01-01T01:30:00.5+01:00"}),
		"bad-entry": "approved",
		"bad-operation": approval({"operation": 1}),
		"bad-requested-by": approval({"requested_by": ""}),
		"bad-approved-by": approval({"approved_by": null}),
		"bad-roles": approval({"approver_roles": "dba"}),
		"bad-expiry": approval({"expires_at": "tomorrow"}),
		"bad-expiry-number": approval({"expires_at": 1767229200}),
		"missing-expiry": object.remove(approval({}), {"expires_at"}),
		"ap-leap-day": approval({"expires_at": "2028-02-29T12:00:00Z"}),
		"ap-past-leap-day": approval({"expires_at": "2024-02-29T12:00:00Z"}),
		"bad-expiry-day": approval({"expires_at": "2026-02-30T00:00:00Z"}),
		"bad-expiry-not-leap": approval({"expires_at": "2100-02-29T00:00:00Z"}),
		"bad-expiry-april-31": approval({"expires_at": "2026-04-31T00:00:00Z"}),
		"bad-expiry-lower-case": approval({"expires_at": "2026-01-01t01:00:00z"}),
		"bad-expiry-space": approval({"expires_at": "2026-01-01 01:00:00Z"}),
		"bad-expiry-hour": approval({"expires_at": "2026-01-01T24:00:00Z"}),
		"bad-expiry-no-zone": approval({"expires_at": "2026-01-01T01:00:00"}),
		"bad-expiry-long-fraction": approval({"expires_at": "2026-01-01T01:00:00.1234567890Z"}),
		"bad-expiry-beyond-2261": approval({"expires_at": "2262-05-01T00:00:00Z"}),
		"bad-expiry-before-1970": approval({"expires_at": "1969-12-31T23:59:59Z"}),
	},
	"command_whitelists": {},
	"platform_admins": [],
}

md := {"operation": "db.drop", "required_role": "dba"}

run(headers, state, m) := r if {
	r := twoPersonApproval.result(mkctx(headers, state), m) with data.synced as fixture_synced
		with time.now_ns as now_ns
}

# alice presents approval id.
as_alice(id) := run({"x-approval-id": id}, {"user": "alice"}, md)

approved(id, by) := {
	"status": "OK",
	"message": "two-person approval valid",
	"instructions": [],
	"metadata": {"approval_id": id, "approved_by": by},
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

approval_required := {
	"status": "POLICY_DENIED",
	"message": "approval required",
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 403,
		"headers": {},
		"body": "{\"error\":\"approval required\"}",
	}],
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
	r.metadata == {}
}

# --- allow --------------------------------------------------------------------

test_valid_approval if {
	as_alice("ap-1") == approved("ap-1", "bob")
}

test_valid_approval_user_from_claims_sub if {
	run({"x-approval-id": "ap-1"}, {"claims": {"sub": "alice"}}, md) == approved("ap-1", "bob")
}

test_valid_approval_custom_header if {
	m := object.union(md, {"approval_header": "X-Change-Ticket"})
	run({"x-change-ticket": "ap-1", "x-approval-id": "ap-expired"}, {"user": "alice"}, m) == approved("ap-1", "bob")
}

test_valid_approval_mixed_case_ctx_header if {
	run({"X-Approval-Id": "ap-1"}, {"user": "alice"}, md) == approved("ap-1", "bob")
}

test_valid_approval_other_required_role if {
	m := {"operation": "db.drop", "required_role": "sre"}
	run({"x-approval-id": "ap-1"}, {"user": "alice"}, m) == approved("ap-1", "bob")
}

test_expires_one_ns_after_now if {
	as_alice("ap-expires-next-ns") == approved("ap-expires-next-ns", "bob")
}

test_expiry_with_offset_and_fraction if {
	as_alice("ap-offset-future") == approved("ap-offset-future", "bob")
}

test_allow_has_no_instructions if {
	r := as_alice("ap-1")
	r.status == "OK"
	r.instructions == []
}

# --- deny: caller and approval id -----------------------------------------------

test_no_user if {
	run({"x-approval-id": "ap-1"}, {}, md) == unauthenticated
}

test_no_state if {
	ctx := {"route": "/", "request": {"headers": {"x-approval-id": "ap-1"}}}
	r := twoPersonApproval.result(ctx, md) with data.synced as fixture_synced with time.now_ns as now_ns
	r == unauthenticated
}

test_no_user_before_approval_required if {
	run({}, {"claims": {"sub": ""}}, md) == unauthenticated
}

test_no_approval_id if {
	run({}, {"user": "alice"}, md) == approval_required
}

test_empty_approval_id if {
	as_alice("") == approval_required
}

test_approval_id_in_other_header if {
	m := object.union(md, {"approval_header": "x-change-ticket"})
	run({"x-approval-id": "ap-1"}, {"user": "alice"}, m) == approval_required
}

test_unknown_approval if {
	as_alice("ap-404") == forbidden("unknown approval")
}

test_unknown_approval_without_data if {
	r := twoPersonApproval.result(mkctx({"x-approval-id": "ap-1"}, {"user": "alice"}), md) with time.now_ns as now_ns
	r == forbidden("unknown approval")
}

test_unknown_approval_without_approvals_section if {
	r := twoPersonApproval.result(mkctx({"x-approval-id": "ap-1"}, {"user": "alice"}), md) with data.synced as {"role_bindings": {"bob": ["dba"]}}
		with time.now_ns as now_ns
	r == forbidden("unknown approval")
}

# --- deny: conditions on the approval -------------------------------------------

test_other_operation if {
	as_alice("ap-other-op") == forbidden("approval is for another operation")
}

test_operation_bound_by_metadata if {
	m := {"operation": "db.restore", "required_role": "dba"}
	run({"x-approval-id": "ap-1"}, {"user": "alice"}, m) == forbidden("approval is for another operation")
}

test_requested_by_someone_else if {
	as_alice("ap-by-carol") == forbidden("approval was requested by someone else")
}

test_approval_presented_by_approver if {
	run({"x-approval-id": "ap-1"}, {"user": "bob"}, md) == forbidden("approval was requested by someone else")
}

test_self_approval if {
	as_alice("ap-self") == forbidden("self-approval is not allowed")
}

test_approver_without_role if {
	as_alice("ap-approver-no-role") == forbidden("approver lacks the required role dba")
}

test_approver_without_bindings if {
	as_alice("ap-approver-unbound") == forbidden("approver lacks the required role dba")
}

test_approver_malformed_binding_holds_no_role if {
	as_alice("ap-approver-binding-malformed") == forbidden("approver lacks the required role dba")
}

test_role_not_in_approval_roles if {
	as_alice("ap-role-not-in-approval") == forbidden("approver lacks the required role dba")
}

test_role_only_in_approval_roles if {
	as_alice("ap-approval-roles-only") == forbidden("approver lacks the required role dba")
}

test_role_named_in_message if {
	m := {"operation": "db.drop", "required_role": "security-officer"}
	run({"x-approval-id": "ap-1"}, {"user": "alice"}, m) == forbidden("approver lacks the required role security-officer")
}

test_expired if {
	as_alice("ap-expired") == forbidden("approval expired")
}

test_expires_exactly_now if {
	as_alice("ap-expires-now") == forbidden("approval expired")
}

test_expires_on_leap_day if {
	as_alice("ap-leap-day") == approved("ap-leap-day", "bob")
	as_alice("ap-past-leap-day") == forbidden("approval expired")
}

test_expiry_with_offset_in_past if {
	as_alice("ap-offset") == forbidden("approval expired")
}

test_expiry_follows_clock if {
	r := twoPersonApproval.result(mkctx({"x-approval-id": "ap-1"}, {"user": "alice"}), md) with data.synced as fixture_synced
		with time.now_ns as now_ns + 3600000000000
	r == forbidden("approval expired")
	r2 := twoPersonApproval.result(mkctx({"x-approval-id": "ap-1"}, {"user": "alice"}), md) with data.synced as fixture_synced
		with time.now_ns as (now_ns + 3600000000000) - 1
	r2 == approved("ap-1", "bob")
}

test_conditions_checked_in_order if {
	# Another operation, requested by carol and expired: the operation decides.
	synced := {"approvals": {"x": approval({"operation": "db.restore", "requested_by": "carol", "expires_at": "2020-01-01T00:00:00Z"})}}
	r := twoPersonApproval.result(mkctx({"x-approval-id": "x"}, {"user": "alice"}), md) with data.synced as synced
		with time.now_ns as now_ns
	r == forbidden("approval is for another operation")
}

test_deny_bodies_echo_nothing if {
	r := as_alice("ap-secret-id-42")
	r == forbidden("unknown approval")
	not contains(json.marshal(r), "ap-secret-id-42")
}

# --- errors: metadata -----------------------------------------------------------

test_md_not_object if {
	is_error(as_alice_md("db.drop"), "invalid metadata: must be an object")
}

as_alice_md(m) := run({"x-approval-id": "ap-1"}, {"user": "alice"}, m)

test_md_unknown_field if {
	is_error(as_alice_md(object.union(md, {"role": "dba", "ttl": 1})), "invalid metadata: unknown field(s) role, ttl")
}

test_md_missing_operation if {
	is_error(as_alice_md({"required_role": "dba"}), "invalid metadata: operation must be a non-empty string")
}

test_md_bad_operation if {
	is_error(as_alice_md({"operation": "", "required_role": "dba"}), "invalid metadata: operation must be a non-empty string")
	is_error(as_alice_md({"operation": ["db.drop"], "required_role": "dba"}), "invalid metadata: operation must be a non-empty string")
}

test_md_missing_required_role if {
	is_error(as_alice_md({"operation": "db.drop"}), "invalid metadata: required_role must be a non-empty string")
}

test_md_bad_required_role if {
	is_error(as_alice_md({"operation": "db.drop", "required_role": ""}), "invalid metadata: required_role must be a non-empty string")
	is_error(as_alice_md({"operation": "db.drop", "required_role": ["dba"]}), "invalid metadata: required_role must be a non-empty string")
}

test_md_bad_approval_header if {
	is_error(as_alice_md(object.union(md, {"approval_header": ""})), "invalid metadata: approval_header must be a non-empty string")
	is_error(as_alice_md(object.union(md, {"approval_header": true})), "invalid metadata: approval_header must be a non-empty string")
}

# --- errors: context ------------------------------------------------------------

test_ctx_not_object if {
	r := twoPersonApproval.result([], md) with data.synced as fixture_synced with time.now_ns as now_ns
	is_error(r, "malformed context: ctx must be an object")
}

test_ctx_missing_request if {
	r := twoPersonApproval.result({"state": {"user": "alice"}}, md) with data.synced as fixture_synced with time.now_ns as now_ns
	is_error(r, "malformed context: request must be an object")
}

test_ctx_missing_headers if {
	r := twoPersonApproval.result({"request": {}, "state": {"user": "alice"}}, md) with data.synced as fixture_synced with time.now_ns as now_ns
	is_error(r, "malformed context: request.headers must be an object")
}

test_ctx_bad_state if {
	is_error(run({"x-approval-id": "ap-1"}, "alice", md), "malformed context: state must be an object")
}

test_ctx_bad_claims if {
	is_error(run({"x-approval-id": "ap-1"}, {"user": "alice", "claims": "alice"}, md), "malformed context: state.claims must be an object")
}

test_ctx_non_string_approval_header if {
	is_error(run({"x-approval-id": ["ap-1"]}, {"user": "alice"}, md), "malformed context: header x-approval-id must be a string")
}

# --- errors: data ---------------------------------------------------------------

in_synced(synced) := r if {
	r := twoPersonApproval.result(mkctx({"x-approval-id": "ap-1"}, {"user": "alice"}), md) with data.synced as synced
		with time.now_ns as now_ns
}

test_data_synced_not_object if {
	is_error(in_synced(["ap-1"]), "policy data: synced must be an object")
}

test_data_approvals_not_object if {
	is_error(in_synced({"approvals": [approval({})]}), "policy data: synced.approvals must be an object")
}

test_data_role_bindings_not_object if {
	synced := {"approvals": {"ap-1": approval({})}, "role_bindings": [{"bob": ["dba"]}]}
	is_error(in_synced(synced), "policy data: synced.role_bindings must be an object")
}

test_data_error_before_no_user if {
	r := twoPersonApproval.result(mkctx({}, {}), md) with data.synced as {"approvals": "none"}
		with time.now_ns as now_ns
	is_error(r, "policy data: synced.approvals must be an object")
}

test_data_approval_not_object if {
	is_error(as_alice("bad-entry"), "policy data: synced.approvals.bad-entry must be an object")
}

test_data_approval_bad_operation if {
	is_error(as_alice("bad-operation"), "policy data: synced.approvals.bad-operation.operation must be a non-empty string")
}

test_data_approval_bad_requested_by if {
	is_error(as_alice("bad-requested-by"), "policy data: synced.approvals.bad-requested-by.requested_by must be a non-empty string")
}

test_data_approval_bad_approved_by if {
	is_error(as_alice("bad-approved-by"), "policy data: synced.approvals.bad-approved-by.approved_by must be a non-empty string")
}

test_data_approval_bad_roles if {
	is_error(as_alice("bad-roles"), "policy data: synced.approvals.bad-roles.approver_roles must be an array")
}

test_data_approval_bad_expiry if {
	is_error(as_alice("bad-expiry"), "policy data: synced.approvals.bad-expiry.expires_at must be an RFC 3339 timestamp")
	is_error(as_alice("bad-expiry-number"), "policy data: synced.approvals.bad-expiry-number.expires_at must be an RFC 3339 timestamp")
	is_error(as_alice("missing-expiry"), "policy data: synced.approvals.missing-expiry.expires_at must be an RFC 3339 timestamp")
}

test_data_approval_malformed_needs_user if {
	run({"x-approval-id": "bad-entry"}, {}, md) == unauthenticated
}

test_data_approval_expiry_not_a_timestamp_both_engines_parse if {
	every id in [
		"bad-expiry-day", "bad-expiry-not-leap", "bad-expiry-april-31", "bad-expiry-lower-case",
		"bad-expiry-space", "bad-expiry-hour", "bad-expiry-no-zone", "bad-expiry-long-fraction",
		"bad-expiry-beyond-2261", "bad-expiry-before-1970",
	] {
		is_error(as_alice(id), concat("", ["policy data: synced.approvals.", id, ".expires_at must be an RFC 3339 timestamp"]))
	}
}
