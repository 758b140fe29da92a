package policy_engine.chain_test

import data.policy_engine.chain
import rego.v1

# chain.fast_ctx is the shortcut the generated steps try first; wherever it
# is defined it must give exactly the context checked, proceeds and next give. Every
# context below meets every result below.

contexts := [
	{"phase": "request", "request": {"headers": {"x-a": "1", "x-user-id": "old"}, "body": "b"}, "state": {"user": "old"}},
	{"phase": "request", "request": {"headers": {}}, "state": {}},
	{"phase": "request", "request": {}},
	{"phase": "response", "request": {"headers": {"x-a": "1"}}, "response": {"headers": {"x-b": "2"}, "body": {"k": 1}}, "state": {"s": 1}},
	{"phase": "request", "request": {"headers": "not an object"}, "state": {}},
	{"phase": "request", "request": {"headers": {}}, "state": "not an object"},
	{"request": {"headers": {"x-a": "1"}}},
	{"phase": "response", "request": {"headers": {"x-a": "1"}, "body": ""}, "response": {"headers": {"x-b": "2"}}, "state": {}},
	{"phase": "request", "request": {"body": "b"}},
	"not an object",
	{"phase": "request", "request": {"headers": {}, "body": ""}, "state": {"claims": {"roles": ["admin"], "iss": "old"}, "user": {"name": "x"}}},
]

results := [
	{"status": "OK", "message": "m", "instructions": [], "metadata": {"k": "v"}},
	{"status": "OK", "instructions": [], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [], "metadata": "not an object"},
	{"status": "OK", "message": "m", "instructions": [{"type": "SET_HEADER", "key": "X-User-ID", "value": "alice"}], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [{"type": "SET_STATE", "key": "user", "value": "alice"}], "metadata": {"a": "1"}},
	{"status": "OK", "message": "m", "instructions": [
		{"type": "SET_HEADER", "key": "X-User-ID", "value": "alice"},
		{"type": "SET_STATE", "key": "user", "value": "alice"},
	], "metadata": {"user_id": "alice"}},
	{"status": "OK", "message": "m", "instructions": [
		{"type": "SET_STATE", "key": "claims", "value": {"sub": "a"}},
		{"type": "SET_HEADER", "key": "x-a", "value": "2"},
	], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [
		{"type": "SET_HEADER", "key": "X-A", "value": "1"},
		{"type": "SET_HEADER", "key": "x-a", "value": "2"},
	], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [
		{"type": "SET_STATE", "key": "k", "value": 1},
		{"type": "SET_STATE", "key": "k", "value": 2},
	], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [{"type": "SET_HEADER", "key": "X-A"}], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [{"type": "SET_HEADER", "key": 7, "value": "x"}], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [{"type": "REMOVE_HEADER", "key": "x-a"}], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [{"type": "SET_BODY", "body": "new"}], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [
		{"type": "SET_HEADER", "key": "X-A", "value": "1"},
		{"type": "IMMEDIATE_RESPONSE", "status_code": 302, "headers": {}, "body": ""},
	], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [null, {"type": "SET_STATE", "key": "k", "value": 1}], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": {"0": {"type": "SET_STATE", "key": "k", "value": 1}}, "metadata": {}},
	{"status": "OK", "message": "m", "instructions": "ab", "metadata": {}},
	{"status": "POLICY_DENIED", "message": "no", "instructions": [], "metadata": {}},
	{"status": "POLICY_ERROR", "message": "boom", "instructions": [], "metadata": {}},
	{"status": "SKIPPED", "message": "", "instructions": [], "metadata": {}},
	{"status": "WEIRD", "message": "", "instructions": [], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [
		{"type": "SET_HEADER", "key": "X-A"},
		{"type": "SET_STATE", "key": "k", "value": 1},
	], "metadata": {}},
	{"status": "OK", "instructions": [
		{"type": "SET_HEADER", "key": "X-Obj", "value": {"a": 1}},
		{"type": "SET_STATE", "key": "k", "value": {"b": [1]}},
	], "metadata": {"m": 1}},
	{"status": "OK", "message": "m", "instructions": [
		{"type": "SET_HEADER", "key": "X-A", "value": "1"},
		{"type": "SET_STATE", "key": 3, "value": 1},
	], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [
		{"type": "SET_HEADER", "key": "X-Frame-Options", "value": "DENY"},
		{"type": "SET_HEADER", "key": "x-a", "value": "2"},
	], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [
		{"type": "SET_HEADER", "key": "X-A", "value": {"o": 1}},
		{"type": "SET_HEADER", "key": "x-b", "value": "2"},
	], "metadata": {}},
	{"status": "OK", "message": "m", "instructions": [
		{"type": "SET_HEADER", "key": "X-A", "value": "1"},
		{"type": "SET_STATE", "key": "k", "value": {"nested": true}},
	], "metadata": {}},
	{"status": "OK", "message": "token valid", "instructions": [
		{"type": "SET_STATE", "key": "claims", "value": {"sub": "a", "roles": ["r"]}},
		{"type": "SET_STATE", "key": "user", "value": "a"},
	], "metadata": {"auth_method": "jwt"}},
	{"status": "OK", "message": "m", "instructions": [
		{"type": "SET_STATE", "key": "user", "value": {"o": 1}},
		{"type": "SET_STATE", "key": "k", "value": 2},
	], "metadata": {}},
]

agrees(acc, r) if {
	not chain.fast_ctx(acc.ctx, r)
}

agrees(acc, r) if {
	fast := chain.fast_ctx(acc.ctx, r)
	chain.checked(r, "p") == r
	chain.proceeds(r, "deny")
	chain.next(acc, r, "p").ctx == fast
}

test_fast_ctx_agrees_with_checked_proceeds_and_next if {
	every c in contexts {
		every r in results {
			agrees(chain.start(c), r)
		}
	}
}

# The shortcut is taken for the usual results (not undefined everywhere).
test_fast_ctx_covers_the_usual_results if {
	ctx := contexts[0]
	chain.fast_ctx(ctx, results[0]) == ctx
	chain.fast_ctx(ctx, results[3])
	chain.fast_ctx(ctx, results[5])
	chain.fast_ctx(ctx, results[6])
	two := chain.fast_ctx(ctx, results[24])
	two.request.headers == {"x-a": "2", "x-frame-options": "DENY", "x-user-id": "old"}
	after := chain.fast_ctx(ctx, results[5])
	after.request.headers["x-user-id"] == "alice"
	after.state.user == "alice"
	after.request.body == "b"
	response := chain.fast_ctx(contexts[3], results[24])
	response.response.headers == {"x-a": "2", "x-b": "2", "x-frame-options": "DENY"}
	response.request == contexts[3].request
	token := chain.fast_ctx(ctx, results[27])
	token.state == {"claims": {"sub": "a", "roles": ["r"]}, "user": "a"}
	token.request == ctx.request
	chain.fast_ctx(contexts[3], results[28]).state == {"s": 1, "user": {"o": 1}, "k": 2}
}

# Two state values where the state already holds objects under their keys:
# they replace those objects (the general branch), never merge into them.
test_fast_ctx_replaces_state_objects if {
	chain.fast_ctx(contexts[10], results[27]).state == {"claims": {"sub": "a", "roles": ["r"]}, "user": "a"}
	chain.fast_ctx(contexts[10], results[28]).state == {"claims": {"roles": ["admin"], "iss": "old"}, "user": {"o": 1}, "k": 2}
}

test_fast_ctx_leaves_the_unusual_to_the_reference if {
	every i in [2, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20] {
		not chain.fast_ctx(contexts[0], results[i])
	}
}

# chain.fast_state is the shortcut of a chain's last step: wherever it is
# defined, it is the state of the decision that checked, proceeds and next
# give.
last_agrees(acc, r) if {
	not chain.fast_state(acc.ctx, r)
}

last_agrees(acc, r) if {
	fast := chain.fast_state(acc.ctx, r)
	chain.checked(r, "p") == r
	chain.proceeds(r, "deny")
	chain.finish(chain.next(acc, r, "p")).state == fast
}

test_fast_state_agrees_with_checked_proceeds_and_next if {
	every c in contexts {
		every r in results {
			last_agrees(chain.start(c), r)
		}
	}
}

test_fast_state_covers_header_body_and_state_results if {
	every i in [0, 1, 3, 4, 5, 6, 7, 9, 11, 12, 22, 24, 25, 26] {
		chain.fast_state(contexts[3], results[i])
	}
	chain.fast_state(contexts[0], results[5]) == {"user": "alice"}
}

test_fast_state_leaves_the_unusual_to_the_reference if {
	every i in [2, 8, 13, 14, 15, 16, 17, 18, 19, 20, 21, 23] {
		not chain.fast_state(contexts[3], results[i])
	}
}
