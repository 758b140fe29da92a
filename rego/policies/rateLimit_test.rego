package policies.rateLimit_test

import rego.v1

import data.policies.rateLimit

mkctx(headers, state) := {
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
	"state": state,
}

ctx := mkctx({"x-api-key": "ak_live_alice_0123456789", "x-tenant": "acme"}, {"user": "alice"})

md := {"requests_per_second": 100, "burst": 20}

denied(retry) := {
	"status": "POLICY_DENIED",
	"message": "rate limit exceeded",
	"instructions": [{
		"type": "IMMEDIATE_RESPONSE",
		"status_code": 429,
		"headers": {"Retry-After": retry},
		"body": "{\"error\":\"rate limit exceeded\"}",
	}],
	"metadata": {"rate_limit_key": "client_ip", "rate_limit_limit": "20", "rate_limit_remaining": "0"},
}

is_error(r, msg) if {
	r.status == "POLICY_ERROR"
	r.message == msg
	r.instructions == []
}

# --- decide: allowed / denied ------------------------------------------------------

test_decide_allowed if {
	take := {"allowed": true, "remaining": 7, "retry_after_seconds": 0, "limit": 20}
	rateLimit.decide(ctx, md, take) == {
		"status": "OK",
		"message": "within rate limit",
		"instructions": [],
		"metadata": {"rate_limit_key": "client_ip", "rate_limit_limit": "20", "rate_limit_remaining": "7"},
	}
}

test_decide_denied_retry_after if {
	take := {"allowed": false, "remaining": 0, "retry_after_seconds": 3, "limit": 20}
	rateLimit.decide(ctx, md, take) == denied("3")
}

test_decide_denied_fractional_retry_rounds_up if {
	take := {"allowed": false, "remaining": 0, "retry_after_seconds": 2.2, "limit": 20}
	rateLimit.decide(ctx, md, take) == denied("3")
}

test_decide_denied_retry_at_least_one_second if {
	take := {"allowed": false, "remaining": 0, "retry_after_seconds": 0.01, "limit": 20}
	rateLimit.decide(ctx, md, take) == denied("1")
	take0 := {"allowed": false, "remaining": 0, "retry_after_seconds": 0, "limit": 20}
	rateLimit.decide(ctx, md, take0) == denied("1")
}

test_decide_denied_missing_retry if {
	r := rateLimit.decide(ctx, md, {"allowed": false})
	r.status == "POLICY_DENIED"
	r.instructions[0].status_code == 429
	r.instructions[0].headers == {"Retry-After": "1"}
	r.metadata == {"rate_limit_key": "client_ip"}
}

test_decide_metadata_names_key_kind if {
	take := {"allowed": true, "remaining": 1, "retry_after_seconds": 0, "limit": 2}
	r := rateLimit.decide(ctx, {"requests_per_second": 1, "key": "header:X-Tenant"}, take)
	r.metadata == {"rate_limit_key": "header:x-tenant", "rate_limit_limit": "2", "rate_limit_remaining": "1"}
}

test_decide_invalid_take if {
	is_error(rateLimit.decide(ctx, md, "yes"), "rate limiter returned an invalid result")
	is_error(rateLimit.decide(ctx, md, {"remaining": 1}), "rate limiter returned an invalid result")
	is_error(rateLimit.decide(ctx, md, {"allowed": "true"}), "rate limiter returned an invalid result")
}

# --- result with the test stand-in (allowed, remaining = burst - 1, limit = burst) ----------

test_result_allowed_via_builtin if {
	rateLimit.result(ctx, md) == {
		"status": "OK",
		"message": "within rate limit",
		"instructions": [],
		"metadata": {"rate_limit_key": "client_ip", "rate_limit_limit": "20", "rate_limit_remaining": "19"},
	}
}

test_result_default_burst_is_ceil_of_rps if {
	r := rateLimit.result(ctx, {"requests_per_second": 2.5})
	r.status == "OK"
	r.metadata.rate_limit_limit == "3"
	r2 := rateLimit.result(ctx, {"requests_per_second": 0.5})
	r2.metadata.rate_limit_limit == "1"
}

# --- bucket keys ---------------------------------------------------------------------

test_bucket_client_ip_default if {
	rateLimit.bucket_key(ctx, md) == "/api/v1/users|client_ip|10.0.0.1"
}

test_bucket_client_ip_explicit if {
	rateLimit.bucket_key(ctx, {"requests_per_second": 1, "key": "client_ip"}) == "/api/v1/users|client_ip|10.0.0.1"
}

test_bucket_api_key_is_hashed if {
	k := rateLimit.bucket_key(ctx, {"requests_per_second": 1, "key": "api_key"})
	k == "/api/v1/users|api_key|fb30fc7fc218228c645c9abfc6d292cefde4755042cbf019f40ee5875738b078"
	not contains(k, "ak_live_alice_0123456789")
}

test_bucket_api_key_custom_header if {
	c := mkctx({"x-key": "ak_live_alice_0123456789"}, {})
	k := rateLimit.bucket_key(c, {"requests_per_second": 1, "key": "api_key", "api_key_header": "X-Key"})
	k == "/api/v1/users|api_key|fb30fc7fc218228c645c9abfc6d292cefde4755042cbf019f40ee5875738b078"
}

test_bucket_user_from_state if {
	rateLimit.bucket_key(ctx, {"requests_per_second": 1, "key": "user"}) == "/api/v1/users|user|alice"
}

test_bucket_user_from_claims_sub if {
	c := mkctx({}, {"claims": {"sub": "bob"}})
	rateLimit.bucket_key(c, {"requests_per_second": 1, "key": "user"}) == "/api/v1/users|user|bob"
}

test_bucket_header if {
	rateLimit.bucket_key(ctx, {"requests_per_second": 1, "key": "header:X-Tenant"}) == "/api/v1/users|header:x-tenant|acme"
}

test_bucket_missing_identity_falls_back_to_client_ip if {
	c := mkctx({}, {})
	rateLimit.bucket_key(c, {"requests_per_second": 1, "key": "user"}) == "/api/v1/users|client_ip|10.0.0.1"
	rateLimit.bucket_key(c, {"requests_per_second": 1, "key": "api_key"}) == "/api/v1/users|client_ip|10.0.0.1"
	rateLimit.bucket_key(c, {"requests_per_second": 1, "key": "header:X-Tenant"}) == "/api/v1/users|client_ip|10.0.0.1"
}

test_bucket_missing_client_ip if {
	c := {"route": "/r", "request": {"headers": {}}}
	rateLimit.bucket_key(c, md) == "/r|client_ip|unknown"
	rateLimit.result(c, md).status == "OK"
}

# --- metadata errors -----------------------------------------------------------------

test_md_not_object if {
	is_error(rateLimit.result(ctx, 100), "invalid metadata: must be an object")
}

test_md_missing_rps if {
	is_error(rateLimit.result(ctx, {"burst": 5}), "invalid metadata: requests_per_second is required")
}

test_md_bad_rps if {
	is_error(rateLimit.result(ctx, {"requests_per_second": 0}), "invalid metadata: requests_per_second must be a number > 0")
	is_error(rateLimit.result(ctx, {"requests_per_second": "100"}), "invalid metadata: requests_per_second must be a number > 0")
}

test_md_bad_burst if {
	is_error(rateLimit.result(ctx, {"requests_per_second": 1, "burst": 0}), "invalid metadata: burst must be an integer >= 1")
	is_error(rateLimit.result(ctx, {"requests_per_second": 1, "burst": 1.5}), "invalid metadata: burst must be an integer >= 1")
	is_error(rateLimit.result(ctx, {"requests_per_second": 1, "burst": "5"}), "invalid metadata: burst must be an integer >= 1")
}

test_md_bad_key if {
	msg := "invalid metadata: key must be client_ip, api_key, user or header:<name>"
	is_error(rateLimit.result(ctx, {"requests_per_second": 1, "key": "ip"}), msg)
	is_error(rateLimit.result(ctx, {"requests_per_second": 1, "key": "header:"}), msg)
	is_error(rateLimit.result(ctx, {"requests_per_second": 1, "key": 3}), msg)
}

test_md_unknown_field if {
	is_error(rateLimit.result(ctx, {"requests_per_second": 1, "window": "1s"}), "invalid metadata: unknown field(s) window")
}

# --- context errors ------------------------------------------------------------------

test_ctx_not_object if {
	is_error(rateLimit.result([], md), "malformed context: ctx must be an object")
}

test_ctx_missing_route if {
	is_error(rateLimit.result({"request": {"headers": {}}}, md), "malformed context: route must be a string")
}

test_ctx_missing_headers if {
	is_error(rateLimit.result({"route": "/r", "request": {}}, md), "malformed context: request.headers must be an object")
}

test_ctx_bad_client_ip if {
	is_error(rateLimit.result({"route": "/r", "request": {"headers": {}, "client_ip": 10}}, md), "malformed context: request.client_ip must be a string")
}

test_ctx_bad_state if {
	is_error(rateLimit.result({"route": "/r", "request": {"headers": {}}, "state": "x"}, md), "malformed context: state must be an object")
}

test_ctx_non_string_identity_header if {
	c := mkctx({"x-api-key": 12}, {})
	is_error(rateLimit.result(c, {"requests_per_second": 1, "key": "api_key"}), "malformed context: header x-api-key must be a string")
}
