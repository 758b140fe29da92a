package policies.commandWhitelist_test

import rego.v1

import data.policies.commandWhitelist

mkreq(headers, body) := {
	"method": "POST",
	"path": "/api/v1/exec",
	"scheme": "http",
	"authority": "example.com",
	"headers": headers,
	"query_params": {},
	"body": body,
	"client_ip": "10.0.0.1",
}

mkctx(headers, body) := {
	"route": "/api/v1/exec",
	"phase": "request",
	"request": mkreq(headers, body),
	"state": {"user": "alice"},
}

fixture_synced := {
	"command_whitelists": {
		"ops": ["uptime", "df -h", "systemctl status nginx"],
		"readonly": ["ls"],
		"empty": [],
		"mixed": [1, "ls", null],
	},
	"role_bindings": {"alice": ["ops"]},
	"platform_admins": ["root"],
	"approvals": {},
}

run(headers, body, md) := r if {
	r := commandWhitelist.result(mkctx(headers, body), md) with data.synced as fixture_synced
}

allowed(name) := {
	"status": "OK",
	"message": "command allowed",
	"instructions": [],
	"metadata": {"command_whitelist": name},
}

bad_request(reason) := {
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

not_allowed(reason) := {
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

is_error(r, msg) if {
	r.status == "POLICY_ERROR"
	r.message == msg
	r.instructions == []
	r.metadata == {}
}

# --- allow --------------------------------------------------------------------

test_listed_command_default_header if {
	run({"x-command": "uptime"}, "", {"whitelist": "ops"}) == allowed("ops")
}

test_listed_command_with_spaces if {
	run({"x-command": "systemctl status nginx"}, "", {"whitelist": "ops"}) == allowed("ops")
}

test_explicit_default_source if {
	run({"x-command": "ls"}, "", {"whitelist": "readonly", "source": "header:x-command"}) == allowed("readonly")
}

test_custom_header_name_is_lower_cased if {
	run({"x-run": "df -h", "x-command": "rm -rf /"}, "", {"whitelist": "ops", "source": "header:X-Run"}) == allowed("ops")
}

test_mixed_case_ctx_header if {
	run({"X-Command": "uptime"}, "", {"whitelist": "ops"}) == allowed("ops")
}

test_body_field if {
	run({}, {"command": "uptime", "args": ["-p"]}, {"whitelist": "ops", "source": "body:command"}) == allowed("ops")
}

test_body_field_ignores_header if {
	run({"x-command": "rm -rf /"}, {"cmd": "ls"}, {"whitelist": "readonly", "source": "body:cmd"}) == allowed("readonly")
}

test_non_string_list_items_ignored if {
	run({"x-command": "ls"}, "", {"whitelist": "mixed"}) == allowed("mixed")
}

test_allow_has_no_instructions if {
	r := run({"x-command": "uptime"}, "", {"whitelist": "ops"})
	r.status == "OK"
	r.instructions == []
	r.metadata == {"command_whitelist": "ops"}
}

# --- deny: not listed -----------------------------------------------------------

test_unlisted_command if {
	run({"x-command": "rm -rf /"}, "", {"whitelist": "ops"}) == not_allowed("command not allowed by whitelist ops: rm -rf /")
}

test_match_is_exact if {
	run({"x-command": "uptime "}, "", {"whitelist": "ops"}) == not_allowed("command not allowed by whitelist ops: uptime ")
	run({"x-command": "UPTIME"}, "", {"whitelist": "ops"}) == not_allowed("command not allowed by whitelist ops: UPTIME")
	run({"x-command": "df"}, "", {"whitelist": "ops"}) == not_allowed("command not allowed by whitelist ops: df")
}

test_listed_elsewhere_not_allowed if {
	run({"x-command": "uptime"}, "", {"whitelist": "readonly"}) == not_allowed("command not allowed by whitelist readonly: uptime")
}

test_empty_whitelist_allows_nothing if {
	run({"x-command": "ls"}, "", {"whitelist": "empty"}) == not_allowed("command not allowed by whitelist empty: ls")
}

test_command_never_in_response_body if {
	r := run({"x-command": "cat /etc/shadow"}, "", {"whitelist": "ops"})
	r.status == "POLICY_DENIED"
	r.instructions[0].status_code == 403
	not contains(json.marshal(r.instructions), "shadow")
}

test_unknown_whitelist if {
	run({"x-command": "uptime"}, "", {"whitelist": "deploy"}) == not_allowed("unknown command whitelist deploy")
}

test_no_synced_data if {
	r := commandWhitelist.result(mkctx({"x-command": "uptime"}, ""), {"whitelist": "ops"})
	r == not_allowed("unknown command whitelist ops")
}

test_synced_without_whitelists if {
	r := commandWhitelist.result(mkctx({"x-command": "uptime"}, ""), {"whitelist": "ops"}) with data.synced as {"platform_admins": []}
	r == not_allowed("unknown command whitelist ops")
}

# --- deny: missing command ------------------------------------------------------

test_missing_header if {
	run({"x-other": "uptime"}, "", {"whitelist": "ops"}) == bad_request("command required in header x-command")
}

test_empty_header if {
	run({"x-command": ""}, "", {"whitelist": "ops"}) == bad_request("command required in header x-command")
}

test_missing_custom_header if {
	run({"x-command": "uptime"}, "", {"whitelist": "ops", "source": "header:X-Run"}) == bad_request("command required in header x-run")
}

test_missing_body_field if {
	run({}, {"cmd": "uptime"}, {"whitelist": "ops", "source": "body:command"}) == bad_request("command required in body field command")
}

test_empty_body_field if {
	run({}, {"command": ""}, {"whitelist": "ops", "source": "body:command"}) == bad_request("command required in body field command")
}

test_body_not_json_object if {
	run({}, "command=uptime", {"whitelist": "ops", "source": "body:command"}) == bad_request("command required in body field command")
	run({}, ["uptime"], {"whitelist": "ops", "source": "body:command"}) == bad_request("command required in body field command")
}

test_body_absent if {
	ctx := {"route": "/api/v1/exec", "request": {"headers": {}}}
	r := commandWhitelist.result(ctx, {"whitelist": "ops", "source": "body:command"}) with data.synced as fixture_synced
	r == bad_request("command required in body field command")
}

test_body_field_not_string if {
	run({}, {"command": ["uptime"]}, {"whitelist": "ops", "source": "body:command"}) == bad_request("command in body field command must be a string")
	run({}, {"command": null}, {"whitelist": "ops", "source": "body:command"}) == bad_request("command in body field command must be a string")
	run({}, {"command": false}, {"whitelist": "ops", "source": "body:command"}) == bad_request("command in body field command must be a string")
}

test_body_field_name_is_case_sensitive if {
	run({}, {"Command": "uptime"}, {"whitelist": "ops", "source": "body:command"}) == bad_request("command required in body field command")
}

test_missing_command_before_unknown_whitelist if {
	run({}, "", {"whitelist": "deploy"}) == bad_request("command required in header x-command")
}

# --- errors: metadata -----------------------------------------------------------

test_md_not_object if {
	is_error(run({"x-command": "ls"}, "", "readonly"), "invalid metadata: must be an object")
}

test_md_unknown_field if {
	is_error(run({"x-command": "ls"}, "", {"whitelist": "readonly", "list": "x", "header": "y"}), "invalid metadata: unknown field(s) header, list")
}

test_md_missing_whitelist if {
	is_error(run({"x-command": "ls"}, "", {}), "invalid metadata: whitelist must be a non-empty string")
}

test_md_bad_whitelist if {
	is_error(run({"x-command": "ls"}, "", {"whitelist": ""}), "invalid metadata: whitelist must be a non-empty string")
	is_error(run({"x-command": "ls"}, "", {"whitelist": ["readonly"]}), "invalid metadata: whitelist must be a non-empty string")
}

test_md_bad_source if {
	msg := "invalid metadata: source must be header:<name> or body:<field>"
	is_error(run({"x-command": "ls"}, "", {"whitelist": "readonly", "source": "x-command"}), msg)
	is_error(run({"x-command": "ls"}, "", {"whitelist": "readonly", "source": "header:"}), msg)
	is_error(run({"x-command": "ls"}, "", {"whitelist": "readonly", "source": "body:"}), msg)
	is_error(run({"x-command": "ls"}, "", {"whitelist": "readonly", "source": "query:cmd"}), msg)
	is_error(run({"x-command": "ls"}, "", {"whitelist": "readonly", "source": 1}), msg)
}

# --- errors: context ------------------------------------------------------------

test_ctx_not_object if {
	r := commandWhitelist.result(null, {"whitelist": "ops"}) with data.synced as fixture_synced
	is_error(r, "malformed context: ctx must be an object")
}

test_ctx_missing_request if {
	r := commandWhitelist.result({"route": "/"}, {"whitelist": "ops"}) with data.synced as fixture_synced
	is_error(r, "malformed context: request must be an object")
}

test_ctx_missing_headers if {
	r := commandWhitelist.result({"route": "/", "request": {"method": "GET"}}, {"whitelist": "ops"}) with data.synced as fixture_synced
	is_error(r, "malformed context: request.headers must be an object")
}

test_ctx_non_string_header if {
	is_error(run({"x-command": ["uptime"]}, "", {"whitelist": "ops"}), "malformed context: header x-command must be a string")
}

test_md_error_before_ctx_error if {
	r := commandWhitelist.result(null, {}) with data.synced as fixture_synced
	is_error(r, "invalid metadata: whitelist must be a non-empty string")
}

# --- errors: data ---------------------------------------------------------------

test_data_synced_not_object if {
	r := commandWhitelist.result(mkctx({"x-command": "ls"}, ""), {"whitelist": "readonly"}) with data.synced as ["ls"]
	is_error(r, "policy data: synced must be an object")
}

test_data_whitelists_not_object if {
	r := commandWhitelist.result(mkctx({"x-command": "ls"}, ""), {"whitelist": "readonly"}) with data.synced as {"command_whitelists": ["ls"]}
	is_error(r, "policy data: synced.command_whitelists must be an object")
}

test_data_named_whitelist_not_array if {
	r := commandWhitelist.result(mkctx({"x-command": "ls"}, ""), {"whitelist": "readonly"}) with data.synced as {"command_whitelists": {"readonly": "ls"}}
	is_error(r, "policy data: synced.command_whitelists.readonly must be an array")
}

test_data_other_whitelist_malformed_ignored if {
	synced := {"command_whitelists": {"readonly": ["ls"], "broken": {"ls": true}}}
	r := commandWhitelist.result(mkctx({"x-command": "ls"}, ""), {"whitelist": "readonly"}) with data.synced as synced
	r == allowed("readonly")
}

test_data_error_before_missing_command if {
	r := commandWhitelist.result(mkctx({}, ""), {"whitelist": "readonly"}) with data.synced as {"command_whitelists": 7}
	is_error(r, "policy data: synced.command_whitelists must be an object")
}
