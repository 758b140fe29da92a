package policies.responseBodyTransform_test

import rego.v1

import data.policies.responseBodyTransform

mkctx(body) := {
	"route": "/api/v1/users",
	"phase": "response",
	"request": {"method": "GET", "path": "/api/v1/users", "headers": {}, "client_ip": "10.0.0.1"},
	"response": {"status_code": 200, "headers": {"content-type": "application/json"}, "body": body},
	"state": {},
}

run(body, md) := responseBodyTransform.result(mkctx(body), md)

set_body(body, n) := {
	"status": "OK",
	"message": "response body fields removed",
	"instructions": [{"type": "SET_BODY", "body": body}],
	"metadata": {"removed_fields": n},
}

is_error(r, msg) if {
	r.status == "POLICY_ERROR"
	r.message == msg
	r.instructions == []
}

users := {
	"internal_id": 1,
	"name": "alice",
	"profile": {"internal_id": 2, "email": "a@example.com", "address": {"internal_id": 3, "city": "Paris"}},
	"items": [
		{"internal_id": 4, "sku": "x"},
		{"sku": "y", "tags": [{"internal_id": 5, "t": "z"}]},
	],
}

test_spec_example_removes_at_every_depth if {
	run(users, {"remove_fields": ["internal_id"]}) == set_body(
		{
			"name": "alice",
			"profile": {"email": "a@example.com", "address": {"city": "Paris"}},
			"items": [{"sku": "x"}, {"sku": "y", "tags": [{"t": "z"}]}],
		},
		"5",
	)
}

test_dotted_path_removes_exactly_that_path if {
	run(users, {"remove_fields": ["profile.address.internal_id"]}) == set_body(
		{
			"internal_id": 1,
			"name": "alice",
			"profile": {"internal_id": 2, "email": "a@example.com", "address": {"city": "Paris"}},
			"items": users.items,
		},
		"1",
	)
}

test_dotted_path_top_level_prefix_only if {
	# "profile.internal_id" does not touch internal_id elsewhere
	r := run(users, {"remove_fields": ["profile.internal_id"]})
	r.instructions[0].body.internal_id == 1
	r.instructions[0].body.profile == {"email": "a@example.com", "address": {"internal_id": 3, "city": "Paris"}}
	r.instructions[0].body.items == users.items
}

test_dotted_path_with_array_index if {
	r := run(users, {"remove_fields": ["items.1.sku"]})
	r == set_body(
		{
			"internal_id": 1,
			"name": "alice",
			"profile": users.profile,
			"items": [{"internal_id": 4, "sku": "x"}, {"tags": [{"internal_id": 5, "t": "z"}]}],
		},
		"1",
	)
}

test_dotted_path_missing_is_noop if {
	run(users, {"remove_fields": ["profile.nope.internal_id", "a.b"]}) == {
		"status": "OK",
		"message": "no fields to remove",
		"instructions": [],
		"metadata": {},
	}
}

test_top_level_array_body if {
	body := [{"id": 1, "secret": "s"}, {"id": 2, "nested": {"secret": "t"}}, "secret", 3]
	run(body, {"remove_fields": ["secret"]}) == set_body([{"id": 1}, {"id": 2, "nested": {}}, "secret", 3], "2")
}

test_several_fields_and_subtree if {
	body := {"a": {"b": {"c": 1}, "token": "x"}, "password": {"password": "p"}, "keep": true}
	run(body, {"remove_fields": ["password", "a.b", "token"]}) == set_body({"a": {}, "keep": true}, "4")
}

# A removed key under a removed key, inside arrays, next to a key that reads
# as a JSON pointer escape: the deeper one goes first, nothing is lost.
test_nested_same_name_inside_arrays if {
	body := {"items": [{"internal_id": {"internal_id": 1, "x": 2}}, {"internal_id": 3, "k~1": {"internal_id": 4}}]}
	run(body, {"remove_fields": ["internal_id"]}) == set_body({"items": [{}, {"k~1": {}}]}, "4")
}

test_key_with_slash if {
	body := {"a/b": 1, "c": {"a/b": 2, "d": 3}}
	run(body, {"remove_fields": ["a/b"]}) == set_body({"c": {"d": 3}}, "2")
}

test_nothing_to_remove if {
	run({"name": "alice"}, {"remove_fields": ["internal_id"]}) == {
		"status": "OK",
		"message": "no fields to remove",
		"instructions": [],
		"metadata": {},
	}
}

test_default_remove_fields_is_empty if {
	r := run(users, {})
	r.status == "OK"
	r.instructions == []
}

test_string_body_untouched if {
	run("{\"internal_id\": 1}", {"remove_fields": ["internal_id"]}) == {
		"status": "OK",
		"message": "response body is not JSON",
		"instructions": [],
		"metadata": {},
	}
}

test_empty_and_missing_body_untouched if {
	run("", {"remove_fields": ["internal_id"]}).instructions == []
	r := responseBodyTransform.result({"response": {"status_code": 204}}, {"remove_fields": ["x"]})
	r.status == "OK"
	r.message == "response body is not JSON"
	r.instructions == []
}

test_scalar_bodies_untouched if {
	run(null, {"remove_fields": ["x"]}).instructions == []
	run(42, {"remove_fields": ["x"]}).instructions == []
}

test_removed_paths_helper if {
	responseBodyTransform.removed_paths({"a": [{"x": 1}], "x": 2}, ["x"]) == {["a", 0, "x"], ["x"]}
}

test_md_not_object if {
	is_error(run(users, ["internal_id"]), "invalid metadata: must be an object")
}

test_md_remove_fields_not_array if {
	is_error(run(users, {"remove_fields": "internal_id"}), "invalid metadata: remove_fields must be an array of non-empty strings")
}

test_md_remove_fields_bad_entries if {
	is_error(run(users, {"remove_fields": ["ok", 3]}), "invalid metadata: remove_fields must be an array of non-empty strings")
	is_error(run(users, {"remove_fields": [""]}), "invalid metadata: remove_fields must be an array of non-empty strings")
	is_error(run(users, {"remove_fields": ["a..b"]}), "invalid metadata: remove_fields must be an array of non-empty strings")
}

test_md_unknown_field if {
	is_error(run(users, {"fields": ["x"]}), "invalid metadata: unknown field(s) fields")
}

test_ctx_missing_response if {
	is_error(responseBodyTransform.result({"route": "/", "request": {}}, {"remove_fields": ["x"]}), "malformed context: response must be an object")
}

test_ctx_not_object if {
	is_error(responseBodyTransform.result(7, {}), "malformed context: ctx must be an object")
}

# result's first branch (plain names) gives what _decide gives, wherever
# _decide is defined.
shortcut_mds := [
	{},
	{"remove_fields": []},
	{"remove_fields": ["internal_id"]},
	{"remove_fields": ["internal_id", "secret"]},
	{"remove_fields": ["users.0.internal_id"]},
	{"remove_fields": ["x", ""]},
	{"remove_fields": [1]},
	{"remove_fields": "internal_id"},
	{"remove_fields": ["x"], "other": 1},
	"not an object",
]

shortcut_ctxs := [
	{"response": {"body": {"internal_id": 1, "users": [{"internal_id": 2, "secret": 3}]}}},
	{"response": {"body": [{"internal_id": 1}]}},
	{"response": {"body": "plain text"}},
	{"response": {}},
	{"response": "not an object"},
	{},
	"not an object",
]

shortcut_agrees(ctx, md) if {
	not responseBodyTransform._decide(ctx, md)
}

shortcut_agrees(ctx, md) if {
	responseBodyTransform.result(ctx, md) == responseBodyTransform._decide(ctx, md)
}

test_result_shortcut_agrees_with_decide if {
	every md in shortcut_mds {
		every ctx in shortcut_ctxs {
			shortcut_agrees(ctx, md)
		}
	}
}
