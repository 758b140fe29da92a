//! The real `policy-agent` binary over a real Unix socket: the two routes of
//! the engine specification §3.2 (exactly its chains and metadata, sent as
//! the protocol's strings), the default policy, state carried from the
//! request to the response phase, discovery, bad input, secrets kept out of
//! the log, and calls over the call stream.

#[path = "agent_uds/admin_route.rs"]
mod admin_route;
#[path = "agent_uds/bad_input.rs"]
mod bad_input;
#[path = "agent_uds/default_policy.rs"]
mod default_policy;
#[path = "agent_uds/discovery.rs"]
mod discovery;
#[path = "agent_uds/response_chain.rs"]
mod response_chain;
#[path = "agent_uds/secrets.rs"]
mod secrets;
#[path = "agent_uds/stream.rs"]
mod stream;
#[path = "agent_uds/users_route.rs"]
mod users_route;
#[path = "agent_uds/wire.rs"]
mod wire;

use std::collections::HashMap;

use anyhow::Context as _;
use policy_engine_tests::{
    AgentOptions, AgentProcess, ResponseExt, RsaSigner, now_seconds, policy, request_context,
    request_phase, response_context, response_phase, sha256_hex, unsigned_token,
};
use policy_proto::agent::policy_agent_client::PolicyAgentClient;
use policy_proto::agent::{
    InstructionType, Policy, PolicyPhase, PolicyRequest, PolicyResponse, StatusCode,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

const USERS: &str = "/api/v1/users";
const ADMIN: &str = "/api/v1/admin";
const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "api-service";

/// Alice's API key; only its SHA-256 is in the agent's data.
const ALICE_KEY: &str = "pe_live_4lice_Zq81mW0xKc3v";
/// A well-formed key that is not in the data.
const UNKNOWN_KEY: &str = "pe_live_m4llory_Yt52nB7pLs";

type Client = PolicyAgentClient<Channel>;

// --- the chains of spec §3.2 -----------------------------------------------------

/// `/api/v1/users` request chain.
fn users_request_chain() -> Vec<Policy> {
    vec![
        policy(
            "apiKeyAuth",
            &[("header_name", "X-API-Key"), ("required", "true")],
        ),
        policy(
            "rateLimit",
            &[("requests_per_second", "100"), ("burst", "20")],
        ),
    ]
}

/// `/api/v1/users` response chain.
fn users_response_chain() -> Vec<Policy> {
    vec![
        policy(
            "addSecurityHeaders",
            &[(
                "headers",
                r#"{"X-Content-Type-Options":"nosniff","X-Frame-Options":"DENY"}"#,
            )],
        ),
        policy(
            "responseBodyTransform",
            &[("remove_fields", r#"["internal_id"]"#)],
        ),
    ]
}

/// `/api/v1/admin` request chain.
fn admin_request_chain() -> Vec<Policy> {
    vec![
        policy(
            "jwtValidation",
            &[("issuer", ISSUER), ("audience", AUDIENCE)],
        ),
        policy("roleCheck", &[("required_roles", r#"["admin"]"#)]),
    ]
}

/// `/api/v1/admin` response chain.
fn admin_response_chain() -> Vec<Policy> {
    vec![policy("auditLog", &[("log_response_body", "true")])]
}

/// `default_policy` request chain.
fn default_request_chain() -> Vec<Policy> {
    vec![policy("allowAll", &[])]
}

// --- fixtures ----------------------------------------------------------------------

/// Policy data with Alice's hashed API key and, when given, the JWT public key.
fn policy_data(jwt_public_key_pem: Option<&str>) -> Value {
    let mut data = json!({
        "policy_data": {
            "apiKeyAuth": {"keys": {sha256_hex(ALICE_KEY): {"user_id": "alice"}}}
        }
    });
    if let Some(pem) = jwt_public_key_pem {
        data["policy_data"]["jwtValidation"] = json!({"public_key_pem": pem});
    }
    data
}

fn options(data: Value) -> AgentOptions {
    AgentOptions {
        data,
        ..AgentOptions::default()
    }
}

fn users_get(client_ip: &str, headers: &[(&str, &str)]) -> PolicyRequest {
    request_phase(
        USERS,
        users_request_chain(),
        request_context("GET", "/api/v1/users?page=1", client_ip, headers),
    )
}

fn admin_get(authorization: Option<&str>) -> PolicyRequest {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    request_phase(
        ADMIN,
        admin_request_chain(),
        request_context("GET", "/api/v1/admin/settings", "10.0.0.20", &headers),
    )
}

fn claims(sub: &str, roles: &[&str], exp_offset_seconds: i64) -> Value {
    let now = now_seconds();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "roles": roles,
        "iat": now - 30,
        "nbf": now - 30,
        "exp": now + exp_offset_seconds,
    })
}

async fn execute(client: &mut Client, request: PolicyRequest) -> anyhow::Result<PolicyResponse> {
    Ok(client.execute_policies(request).await?.into_inner())
}

/// A request that must succeed: the agent is still serving.
async fn assert_still_serving(client: &mut Client) -> anyhow::Result<()> {
    let r = execute(
        client,
        request_phase(
            "/unmatched",
            default_request_chain(),
            request_context("GET", "/", "10.9.9.9", &[]),
        ),
    )
    .await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    Ok(())
}

/// Asserts `r` is a denial by `policy` with a single immediate response of
/// `status`, and returns that response's headers and body.
fn assert_denied(
    r: &PolicyResponse,
    policy: &str,
    status: i32,
    message: &str,
) -> anyhow::Result<(HashMap<String, String>, Value)> {
    assert_eq!(r.code(), StatusCode::PolicyDenied, "{r:?}");
    assert_eq!(r.policy_name(), policy, "{r:?}");
    assert_eq!(r.message, message, "{r:?}");
    let immediate = r
        .immediate()
        .with_context(|| format!("one immediate response expected: {r:?}"))?;
    assert_eq!(immediate.status_code, status, "{r:?}");
    let body = serde_json::from_slice(&immediate.body)
        .with_context(|| format!("immediate body is not JSON: {r:?}"))?;
    Ok((immediate.headers.clone(), body))
}

/// Asserts `r` is a `POLICY_ERROR` answered with an immediate `status` and
/// returns its message.
fn assert_policy_error(r: &PolicyResponse, status: i32) -> anyhow::Result<&str> {
    assert_eq!(r.code(), StatusCode::PolicyError, "{r:?}");
    let immediate = r
        .immediate()
        .with_context(|| format!("one immediate response expected: {r:?}"))?;
    assert_eq!(immediate.status_code, status, "{r:?}");
    Ok(&r.message)
}
