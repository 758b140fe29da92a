//! The real `policy-agent` binary over a real Unix socket: the two routes of
//! the engine specification §3.2 (exactly its chains and metadata, sent as
//! the protocol's strings), the default policy, state carried from the
//! request to the response phase, discovery, bad input, and secrets kept out
//! of the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use policy_engine_tests::{
    AgentOptions, AgentProcess, ResponseExt, RsaSigner, now_seconds, policy, request_context, request_phase,
    response_context, response_phase, sha256_hex, unsigned_token,
};
use policy_proto::agent::policy_agent_client::PolicyAgentClient;
use policy_proto::agent::{
    GetAgentConfigRequest, HealthRequest, InstructionType, Policy, PolicyPhase, PolicyRequest, PolicyResponse,
    StatusCode,
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
        policy("apiKeyAuth", &[("header_name", "X-API-Key"), ("required", "true")]),
        policy("rateLimit", &[("requests_per_second", "100"), ("burst", "20")]),
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
        policy("responseBodyTransform", &[("remove_fields", r#"["internal_id"]"#)]),
    ]
}

/// `/api/v1/admin` request chain.
fn admin_request_chain() -> Vec<Policy> {
    vec![
        policy("jwtValidation", &[("issuer", ISSUER), ("audience", AUDIENCE)]),
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
    let headers: Vec<(&str, &str)> = authorization.map(|a| ("Authorization", a)).into_iter().collect();
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
fn assert_denied(r: &PolicyResponse, policy: &str, status: i32, message: &str) -> (HashMap<String, String>, Value) {
    assert_eq!(r.code(), StatusCode::PolicyDenied, "{r:?}");
    assert_eq!(r.policy_name(), policy, "{r:?}");
    assert_eq!(r.message, message, "{r:?}");
    let immediate = r.immediate().unwrap_or_else(|| panic!("one immediate response expected: {r:?}"));
    assert_eq!(immediate.status_code, status, "{r:?}");
    let body = serde_json::from_slice(&immediate.body)
        .unwrap_or_else(|e| panic!("immediate body is not JSON ({e}): {r:?}"));
    (immediate.headers.clone(), body)
}

/// Asserts `r` is a `POLICY_ERROR` answered with an immediate `status` and
/// returns its message.
fn assert_policy_error(r: &PolicyResponse, status: i32) -> &str {
    assert_eq!(r.code(), StatusCode::PolicyError, "{r:?}");
    let immediate = r.immediate().unwrap_or_else(|| panic!("one immediate response expected: {r:?}"));
    assert_eq!(immediate.status_code, status, "{r:?}");
    &r.message
}

// --- /api/v1/users -------------------------------------------------------------------

#[tokio::test]
async fn users_route_authenticates_by_api_key() -> anyhow::Result<()> {
    let agent = AgentProcess::start(&options(policy_data(None))).await?;
    let mut client = agent.client().await?;

    // No key: 401 with WWW-Authenticate, and the rate limiter is not reached.
    let r = execute(&mut client, users_get("10.0.0.1", &[])).await?;
    let (headers, body) = assert_denied(&r, "apiKeyAuth", 401, "API key required");
    assert_eq!(headers, HashMap::from([("WWW-Authenticate".into(), "API-Key".into())]));
    assert_eq!(body, json!({"error": "API key required"}));
    assert_eq!(
        r.outcome_list(),
        vec![("apiKeyAuth", StatusCode::PolicyDenied, "API key required")]
    );
    assert_eq!(r.instruction_types(), vec![InstructionType::ImmediateResponse]);

    // An empty key is no key.
    let r = execute(&mut client, users_get("10.0.0.1", &[("X-API-Key", "")])).await?;
    assert_denied(&r, "apiKeyAuth", 401, "API key required");

    // A key that is not in the data: 403.
    let r = execute(&mut client, users_get("10.0.0.1", &[("X-API-Key", UNKNOWN_KEY)])).await?;
    let (headers, body) = assert_denied(&r, "apiKeyAuth", 403, "Invalid API key");
    assert!(headers.is_empty(), "{headers:?}");
    assert_eq!(body, json!({"error": "Invalid API key"}));
    assert_eq!(r.outcome_list().len(), 1, "{r:?}");

    // A good key (header name in any case): OK, X-User-ID set, state user.
    let r = execute(&mut client, users_get("10.0.0.1", &[("x-api-key", ALICE_KEY)])).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert_eq!(r.policy_name(), "");
    assert_eq!(r.set_headers(), vec![("X-User-ID", "alice")]);
    assert_eq!(
        r.instruction_types(),
        vec![InstructionType::SetHeader, InstructionType::SetState]
    );
    assert!(r.immediate().is_none(), "{r:?}");
    assert_eq!(r.state(), json!({"user": "alice"}));
    assert_eq!(r.metadata.get("auth_method").map(String::as_str), Some("api_key"));
    assert_eq!(r.metadata.get("rate_limit_key").map(String::as_str), Some("client_ip"));
    assert_eq!(r.metadata.get("rate_limit_limit").map(String::as_str), Some("20"));
    assert_eq!(r.metadata.get("rate_limit_remaining").map(String::as_str), Some("19"));
    assert_eq!(
        r.outcome_list(),
        vec![
            ("apiKeyAuth", StatusCode::Ok, "API key valid"),
            ("rateLimit", StatusCode::Ok, "within rate limit"),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn users_route_answers_429_with_retry_after_once_the_bucket_is_empty() -> anyhow::Result<()> {
    let agent = AgentProcess::start(&options(policy_data(None))).await?;
    let mut client = agent.client().await?;
    let chain = vec![
        policy("apiKeyAuth", &[("header_name", "X-API-Key"), ("required", "true")]),
        policy("rateLimit", &[("requests_per_second", "1"), ("burst", "2")]),
    ];
    let get = |ip: &str| {
        request_phase(
            USERS,
            chain.clone(),
            request_context("GET", "/api/v1/users", ip, &[("X-API-Key", ALICE_KEY)]),
        )
    };

    // Compile the chain first, from another client, so the three takes below
    // happen well within one refill period.
    let r = execute(&mut client, get("10.0.1.99")).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");

    for remaining in ["1", "0"] {
        let r = execute(&mut client, get("10.0.1.1")).await?;
        assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
        assert_eq!(
            r.metadata.get("rate_limit_remaining").map(String::as_str),
            Some(remaining),
            "{r:?}"
        );
    }
    let r = execute(&mut client, get("10.0.1.1")).await?;
    let (headers, body) = assert_denied(&r, "rateLimit", 429, "rate limit exceeded");
    assert_eq!(headers, HashMap::from([("Retry-After".into(), "1".into())]));
    assert_eq!(body, json!({"error": "rate limit exceeded"}));
    assert_eq!(r.metadata.get("rate_limit_limit").map(String::as_str), Some("2"));
    assert_eq!(r.metadata.get("rate_limit_remaining").map(String::as_str), Some("0"));
    assert_eq!(
        r.outcome_list(),
        vec![
            ("apiKeyAuth", StatusCode::Ok, "API key valid"),
            ("rateLimit", StatusCode::PolicyDenied, "rate limit exceeded"),
        ]
    );

    // Buckets are per client: another client is still allowed.
    let r = execute(&mut client, get("10.0.1.2")).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    Ok(())
}

// --- /api/v1/admin -----------------------------------------------------------------

#[tokio::test]
async fn admin_route_validates_the_jwt_then_requires_the_admin_role() -> anyhow::Result<()> {
    let signer = RsaSigner::generate()?;
    let other_signer = RsaSigner::generate()?;
    let agent = AgentProcess::start(&options(policy_data(Some(&signer.public_key_pem()?)))).await?;
    let mut client = agent.client().await?;
    let bearer = |t: &str| format!("Bearer {t}");
    let www_authenticate = HashMap::from([(
        "WWW-Authenticate".to_string(),
        "Bearer error=\"invalid_token\"".to_string(),
    )]);

    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "token missing"),
        (
            "not a bearer token",
            Some("Basic YWxpY2U6c2VjcmV0".into()),
            "malformed authorization header",
        ),
        ("malformed", Some(bearer("not-a.jwt")), "malformed token"),
        (
            "expired",
            Some(bearer(&signer.sign(&claims("alice", &["admin"], -3600))?)),
            "token expired",
        ),
        (
            "signed with another key",
            Some(bearer(&other_signer.sign(&claims("alice", &["admin"], 600))?)),
            "invalid signature",
        ),
        (
            "alg none",
            Some(bearer(&unsigned_token(&claims("alice", &["admin"], 600))?)),
            "unsigned token rejected",
        ),
        (
            "another issuer",
            Some(bearer(&signer.sign(&json!({
                "iss": "https://evil.example.com", "aud": AUDIENCE, "sub": "alice",
                "roles": ["admin"], "exp": now_seconds() + 600
            }))?)),
            "issuer mismatch",
        ),
        (
            "another audience",
            Some(bearer(&signer.sign(&json!({
                "iss": ISSUER, "aud": "billing-service", "sub": "alice",
                "roles": ["admin"], "exp": now_seconds() + 600
            }))?)),
            "audience mismatch",
        ),
    ];
    for (case, authorization, message) in cases {
        let r = execute(&mut client, admin_get(authorization.as_deref())).await?;
        let (headers, body) = assert_denied(&r, "jwtValidation", 401, message);
        assert_eq!(headers, www_authenticate, "{case}");
        assert_eq!(body, json!({"error": message}), "{case}");
        assert_eq!(r.outcome_list().len(), 1, "{case}: roleCheck must not run: {r:?}");
    }

    // A valid token without the admin role: 403 from roleCheck.
    let reader = signer.sign(&claims("bob", &["reader"], 600))?;
    let r = execute(&mut client, admin_get(Some(&bearer(&reader)))).await?;
    let (headers, body) = assert_denied(&r, "roleCheck", 403, "requires one of the roles: admin");
    assert!(headers.is_empty(), "{headers:?}");
    assert_eq!(body, json!({"error": "forbidden"}));
    assert_eq!(
        r.outcome_list(),
        vec![
            ("jwtValidation", StatusCode::Ok, "token valid"),
            ("roleCheck", StatusCode::PolicyDenied, "requires one of the roles: admin"),
        ]
    );

    // An admin: OK, with the claims and the user in the state.
    let admin_claims = claims("alice", &["admin", "reader"], 600);
    let admin = signer.sign(&admin_claims)?;
    let r = execute(&mut client, admin_get(Some(&bearer(&admin)))).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert!(r.immediate().is_none(), "{r:?}");
    assert_eq!(r.metadata.get("auth_method").map(String::as_str), Some("jwt"));
    assert_eq!(r.state(), json!({"claims": admin_claims, "user": "alice"}));
    assert_eq!(
        r.outcome_list(),
        vec![
            ("jwtValidation", StatusCode::Ok, "token valid"),
            ("roleCheck", StatusCode::Ok, "required roles present"),
        ]
    );
    Ok(())
}

// --- response chain, default policy, state -------------------------------------------

#[tokio::test]
async fn users_response_chain_adds_security_headers_and_removes_internal_id() -> anyhow::Result<()> {
    let agent = AgentProcess::start(&options(policy_data(None))).await?;
    let mut client = agent.client().await?;
    let request = || request_context("GET", "/api/v1/users/7", "10.0.2.1", &[("X-API-Key", ALICE_KEY)]);
    let respond = |content_type: &str, body: &[u8]| {
        response_phase(
            USERS,
            users_response_chain(),
            request(),
            response_context(200, &[("Content-Type", content_type)], body),
            br#"{"user":"alice"}"#.to_vec(),
        )
    };
    let security_headers = vec![("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY")];

    let body = json!({
        "id": 7,
        "internal_id": "u-7",
        "name": "Ann",
        "note": "the value internal_id stays",
        "internal_ids": [1, 2],
        "profile": {
            "internal_id": 70,
            "email": "ann@example.com",
            "address": {"internal_id": null, "city": "Oslo"}
        },
        "orders": [
            {"internal_id": 1, "sku": "A"},
            {"sku": "B", "lines": [{"internal_id": "l-1", "qty": 2}, [{"internal_id": 3, "x": true}]]}
        ]
    });
    let r = execute(&mut client, respond("application/json", &serde_json::to_vec(&body)?)).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert_eq!(r.set_headers(), security_headers);
    assert_eq!(
        r.instruction_types(),
        vec![InstructionType::SetHeader, InstructionType::SetHeader, InstructionType::SetBody]
    );
    let [new_body] = r.set_bodies()[..] else {
        panic!("one SET_BODY expected: {r:?}");
    };
    assert_eq!(
        serde_json::from_slice::<Value>(new_body)?,
        json!({
            "id": 7,
            "name": "Ann",
            "note": "the value internal_id stays",
            "internal_ids": [1, 2],
            "profile": {"email": "ann@example.com", "address": {"city": "Oslo"}},
            "orders": [
                {"sku": "A"},
                {"sku": "B", "lines": [{"qty": 2}, [{"x": true}]]}
            ]
        })
    );
    assert_eq!(r.state(), json!({"user": "alice"}));

    // A top-level array.
    let r = execute(
        &mut client,
        respond("application/json; charset=utf-8", br#"[{"internal_id":1,"a":1},{"b":[{"internal_id":2}]}]"#),
    )
    .await?;
    let [new_body] = r.set_bodies()[..] else {
        panic!("one SET_BODY expected: {r:?}");
    };
    assert_eq!(serde_json::from_slice::<Value>(new_body)?, json!([{"a": 1}, {"b": [{}]}]));

    // JSON without the field: headers only.
    let r = execute(&mut client, respond("application/json", br#"{"id":1,"tags":["internal_id"]}"#)).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert_eq!(r.set_headers(), security_headers);
    assert!(r.set_bodies().is_empty(), "{r:?}");

    // Bodies that are not JSON are left untouched: text, and malformed JSON.
    for (content_type, body) in [
        ("text/plain", &b"internal_id=42; name=Ann"[..]),
        ("application/json", &b"{\"internal_id\": 42,"[..]),
        ("text/html", &b"<p>{\"internal_id\": 1}</p>"[..]),
    ] {
        let r = execute(&mut client, respond(content_type, body)).await?;
        assert_eq!(r.code(), StatusCode::Ok, "{content_type}: {r:?}");
        assert_eq!(r.set_headers(), security_headers, "{content_type}");
        assert_eq!(
            r.instruction_types(),
            vec![InstructionType::SetHeader, InstructionType::SetHeader],
            "{content_type}: {r:?}"
        );
        assert_eq!(
            r.outcome_list(),
            vec![
                ("addSecurityHeaders", StatusCode::Ok, "security headers added"),
                ("responseBodyTransform", StatusCode::Ok, "response body is not JSON"),
            ],
            "{content_type}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn default_policy_allows_everything() -> anyhow::Result<()> {
    let agent = AgentProcess::start(&options(policy_data(None))).await?;
    let mut client = agent.client().await?;
    let r = execute(
        &mut client,
        request_phase(
            "/static/logo.png",
            default_request_chain(),
            request_context("POST", "/static/logo.png", "10.0.3.1", &[("Content-Type", "image/png")]),
        ),
    )
    .await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert!(r.instructions.is_empty(), "{r:?}");
    assert_eq!(r.outcome_list(), vec![("allowAll", StatusCode::Ok, "allowed")]);
    assert_eq!(r.state(), json!({}));
    Ok(())
}

#[tokio::test]
async fn request_phase_state_reaches_the_response_phase() -> anyhow::Result<()> {
    let signer = RsaSigner::generate()?;
    let agent = AgentProcess::start(&options(policy_data(Some(&signer.public_key_pem()?)))).await?;
    let mut client = agent.client().await?;

    // /api/v1/admin: the JWT's claims and user, then auditLog in the response phase.
    let admin_claims = claims("alice", &["admin"], 600);
    let authorization = format!("Bearer {}", signer.sign(&admin_claims)?);
    let req = admin_get(Some(&authorization));
    let context = req.context.clone().unwrap_or_default();
    let r = execute(&mut client, req).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    let state = r.state_json.clone();
    let response = response_context(200, &[("Content-Type", "application/json")], br#"{"ok":true}"#);
    let r = execute(
        &mut client,
        response_phase(ADMIN, admin_response_chain(), context.clone(), response.clone(), state),
    )
    .await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert_eq!(
        r.metadata,
        HashMap::from([
            ("audit".into(), "full".into()),
            ("audit_request_body".into(), "false".into()),
            ("audit_response_body".into(), "true".into()),
        ])
    );
    assert_eq!(r.state(), json!({"claims": admin_claims, "user": "alice"}));
    assert_eq!(r.outcome_list(), vec![("auditLog", StatusCode::Ok, "audit")]);
    // Without the state the response phase knows no user.
    let r = execute(
        &mut client,
        response_phase(ADMIN, admin_response_chain(), context, response, Vec::new()),
    )
    .await?;
    assert_eq!(r.state(), json!({}));

    // /api/v1/users: the API key's user.
    let req = users_get("10.0.4.1", &[("X-API-Key", ALICE_KEY)]);
    let context = req.context.clone().unwrap_or_default();
    let r = execute(&mut client, req).await?;
    assert_eq!(r.state(), json!({"user": "alice"}));
    let r = execute(
        &mut client,
        response_phase(
            USERS,
            users_response_chain(),
            context,
            response_context(200, &[("Content-Type", "application/json")], br#"{"internal_id":1}"#),
            r.state_json.clone(),
        ),
    )
    .await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert_eq!(r.state(), json!({"user": "alice"}));

    // State that is not a JSON object is a clear error.
    let mut bad = response_phase(
        USERS,
        users_response_chain(),
        request_context("GET", "/api/v1/users", "10.0.4.1", &[]),
        response_context(200, &[], b""),
        b"[\"user\"]".to_vec(),
    );
    bad.request_id = "bad-state".into();
    let r = execute(&mut client, bad).await?;
    assert_eq!(
        assert_policy_error(&r, 400),
        "invalid request: state_json must be a JSON object"
    );
    assert_eq!(r.request_id, "bad-state");
    Ok(())
}

// --- discovery ------------------------------------------------------------------------

#[tokio::test]
async fn get_agent_config_lists_every_builtin_policy_and_the_socket_is_private() -> anyhow::Result<()> {
    let opts = AgentOptions {
        name: "uds-test-agent".into(),
        max_body_size_bytes: 4096,
        ..options(policy_data(None))
    };
    let agent = AgentProcess::start(&opts).await?;

    let meta = std::fs::metadata(agent.socket())?;
    assert!(meta.file_type().is_socket(), "{meta:?}");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket mode");

    let mut client = agent.client().await?;
    let config = client.get_agent_config(GetAgentConfigRequest {}).await?.into_inner();
    assert_eq!(config.agent_name, "uds-test-agent");
    assert!(!config.agent_version.is_empty());
    assert_eq!(
        config.agent_metadata.get("max_body_size_bytes").map(String::as_str),
        Some("4096")
    );
    let health = client.health(HealthRequest {}).await?.into_inner();
    assert_eq!(
        config.agent_metadata.get("policy_revision"),
        Some(&health.policy_revision)
    );

    use PolicyPhase::{Request, Response};
    let expected: BTreeMap<&str, Vec<PolicyPhase>> = BTreeMap::from([
        ("addSecurityHeaders", vec![Response]),
        ("allowAll", vec![Request, Response]),
        ("apiKeyAuth", vec![Request]),
        ("auditLog", vec![Request, Response]),
        ("jwtValidation", vec![Request]),
        ("rateLimit", vec![Request]),
        ("responseBodyTransform", vec![Response]),
        ("roleCheck", vec![Request]),
    ]);
    let names: Vec<&str> = config.supported_policies.iter().map(|p| p.name.as_str()).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "duplicate policies: {names:?}");
    for (name, phases) in &expected {
        let p = config
            .supported_policies
            .iter()
            .find(|p| p.name == *name)
            .unwrap_or_else(|| panic!("`{name}` missing from {names:?}"));
        let phases_sent: Vec<i32> = phases.iter().map(|ph| *ph as i32).collect();
        assert_eq!(p.supported_phases, phases_sent, "{name} phases");
        let version: Vec<&str> = p.version.split('.').collect();
        assert!(
            version.len() == 3 && version.iter().all(|v| v.parse::<u32>().is_ok()),
            "{name} version `{}`",
            p.version
        );
        assert!(p.description.len() > 10, "{name} description `{}`", p.description);
        let schema: Value = serde_json::from_str(&p.metadata_schema)
            .unwrap_or_else(|e| panic!("{name} metadata_schema is not JSON ({e}): {}", p.metadata_schema));
        assert_eq!(schema["type"], "object", "{name}: {schema}");
        assert!(schema["properties"].is_object(), "{name}: {schema}");
    }
    let schema_of = |name: &str| -> Value {
        config
            .supported_policies
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| serde_json::from_str(&p.metadata_schema).ok())
            .unwrap_or(Value::Null)
    };
    // The fields the §3.2 chains use are declared with their types.
    assert_eq!(schema_of("apiKeyAuth")["properties"]["header_name"]["type"], "string");
    assert_eq!(schema_of("apiKeyAuth")["properties"]["required"]["type"], "boolean");
    assert_eq!(schema_of("rateLimit")["properties"]["requests_per_second"]["type"], "number");
    assert_eq!(schema_of("rateLimit")["properties"]["burst"]["type"], "integer");
    assert_eq!(schema_of("rateLimit")["required"], json!(["requests_per_second"]));
    assert_eq!(schema_of("jwtValidation")["properties"]["issuer"]["type"], "string");
    assert_eq!(schema_of("roleCheck")["properties"]["required_roles"]["type"], "array");
    assert_eq!(schema_of("addSecurityHeaders")["properties"]["headers"]["type"], "object");
    assert_eq!(schema_of("responseBodyTransform")["properties"]["remove_fields"]["type"], "array");
    assert_eq!(schema_of("auditLog")["properties"]["log_response_body"]["type"], "boolean");
    Ok(())
}

// --- bad input ------------------------------------------------------------------------

#[tokio::test]
async fn unknown_policy_is_skipped_unless_fail_on_unknown() -> anyhow::Result<()> {
    let chain = || vec![policy("geoFence", &[("countries", "[\"NO\"]")]), policy("allowAll", &[])];
    let req = || request_phase(USERS, chain(), request_context("GET", "/api/v1/users", "10.0.5.1", &[]));

    let lenient = AgentProcess::start(&options(policy_data(None))).await?;
    let mut client = lenient.client().await?;
    let r = execute(&mut client, req()).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert!(r.instructions.is_empty(), "{r:?}");
    assert_eq!(
        r.outcome_list(),
        vec![
            ("geoFence", StatusCode::Ok, "unknown policy `geoFence` skipped"),
            ("allowAll", StatusCode::Ok, "allowed"),
        ]
    );

    let strict = AgentProcess::start(&AgentOptions {
        fail_on_unknown: true,
        ..options(policy_data(None))
    })
    .await?;
    let mut client = strict.client().await?;
    let r = execute(&mut client, req()).await?;
    assert_eq!(assert_policy_error(&r, 500), "unknown policy `geoFence`");
    assert_eq!(r.policy_name(), "geoFence");
    assert_eq!(
        r.outcome_list(),
        vec![("geoFence", StatusCode::PolicyError, "unknown policy `geoFence`")]
    );
    // on_failure cannot let an unknown policy through on a strict agent.
    let mut lax = req();
    lax.policies[0].on_failure = "continue".into();
    let r = execute(&mut client, lax).await?;
    assert_eq!(assert_policy_error(&r, 500), "unknown policy `geoFence`");
    assert_still_serving(&mut client).await?;
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_the_agent_keeps_serving() -> anyhow::Result<()> {
    let mut agent = AgentProcess::start(&AgentOptions {
        max_body_size_bytes: 4096,
        ..options(policy_data(None))
    })
    .await?;
    let mut client = agent.client().await?;
    let good_key = [("X-API-Key", ALICE_KEY)];

    // Metadata that does not satisfy the schema names the policy and the field.
    let mut req = users_get("10.0.6.1", &good_key);
    req.policies[1] = policy("rateLimit", &[("requests_per_second", "fast"), ("burst", "20")]);
    let r = execute(&mut client, req).await?;
    let message = assert_policy_error(&r, 500);
    assert!(message.starts_with("invalid metadata for `rateLimit`: "), "{message}");
    assert!(message.contains("/requests_per_second"), "{message}");
    assert!(message.contains("\"fast\""), "{message}");
    assert_eq!(r.policy_name(), "rateLimit");
    assert_eq!(
        r.outcome_list().iter().map(|o| (o.0, o.1)).collect::<Vec<_>>(),
        vec![("apiKeyAuth", StatusCode::Ok), ("rateLimit", StatusCode::PolicyError)]
    );
    let body: Value = serde_json::from_slice(&r.immediate().map(|i| i.body.clone()).unwrap_or_default())?;
    assert_eq!(body, json!({"error": "policy error", "policy": "rateLimit"}));
    assert_still_serving(&mut client).await?;

    let mut req = users_get("10.0.6.1", &good_key);
    req.policies[0] = policy("apiKeyAuth", &[("header", "X-API-Key"), ("required", "yes")]);
    let r = execute(&mut client, req).await?;
    let message = assert_policy_error(&r, 500);
    assert!(message.starts_with("invalid metadata for `apiKeyAuth`: "), "{message}");
    assert!(message.contains("/required"), "{message}");
    assert!(message.contains("'header'"), "{message}");
    assert_eq!(r.policy_name(), "apiKeyAuth");
    assert_still_serving(&mut client).await?;

    // Bodies over max_body_size_bytes: 413, in either phase.
    let mut req = users_get("10.0.6.1", &good_key);
    if let Some(ctx) = req.context.as_mut() {
        ctx.body = vec![b'a'; 5000];
    }
    let r = execute(&mut client, req).await?;
    assert_eq!(
        assert_policy_error(&r, 413),
        "request body is 5000 bytes, over the limit of 4096 bytes (`max_body_size_bytes`)"
    );
    assert_eq!(r.metadata.get("error_code").map(String::as_str), Some("body_too_large"));
    let body: Value = serde_json::from_slice(&r.immediate().map(|i| i.body.clone()).unwrap_or_default())?;
    assert_eq!(body["code"], "body_too_large");
    let r = execute(
        &mut client,
        response_phase(
            USERS,
            users_response_chain(),
            request_context("GET", "/api/v1/users", "10.0.6.1", &[]),
            response_context(200, &[("Content-Type", "application/json")], &[b' '; 4097]),
            Vec::new(),
        ),
    )
    .await?;
    assert_eq!(
        assert_policy_error(&r, 413),
        "response body is 4097 bytes, over the limit of 4096 bytes (`max_body_size_bytes`)"
    );
    assert_still_serving(&mut client).await?;

    // JSON nested 500 levels deep, in either phase.
    let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
    let mut req = users_get("10.0.6.1", &[("X-API-Key", ALICE_KEY), ("Content-Type", "application/json")]);
    if let Some(ctx) = req.context.as_mut() {
        ctx.method = "POST".into();
        ctx.body = deep.clone().into_bytes();
    }
    let r = execute(&mut client, req).await?;
    assert_eq!(
        assert_policy_error(&r, 400),
        "invalid request: request body: JSON nested deeper than 128 levels"
    );
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(500), "}".repeat(500));
    let r = execute(
        &mut client,
        response_phase(
            USERS,
            users_response_chain(),
            request_context("GET", "/api/v1/users", "10.0.6.1", &[]),
            response_context(200, &[("Content-Type", "application/json")], deep_objects.as_bytes()),
            Vec::new(),
        ),
    )
    .await?;
    assert_eq!(
        assert_policy_error(&r, 400),
        "invalid request: response body: JSON nested deeper than 128 levels"
    );
    assert_still_serving(&mut client).await?;

    // An on_failure value that does not exist.
    let mut req = users_get("10.0.6.1", &good_key);
    req.policies[1].on_failure = "ignore".into();
    let r = execute(&mut client, req).await?;
    assert_eq!(
        assert_policy_error(&r, 400),
        "invalid request: policy `rateLimit`: on_failure must be deny, continue or skip_remaining, got `ignore`"
    );
    assert_eq!(r.metadata.get("error_code").map(String::as_str), Some("invalid_request"));
    assert_still_serving(&mut client).await?;

    // A negative deadline.
    let mut req = users_get("10.0.6.1", &good_key);
    req.deadline_ms = -5;
    let r = execute(&mut client, req).await?;
    assert_eq!(
        assert_policy_error(&r, 400),
        "invalid request: deadline_ms must not be negative, got -5"
    );
    assert_still_serving(&mut client).await?;

    // A phase that does not exist.
    let mut req = users_get("10.0.6.1", &good_key);
    req.phase = 7;
    let r = execute(&mut client, req).await?;
    assert_eq!(assert_policy_error(&r, 400), "invalid request: unknown phase `7`");

    // A policy in the wrong phase.
    let r = execute(
        &mut client,
        request_phase(
            USERS,
            users_response_chain(),
            request_context("GET", "/api/v1/users", "10.0.6.1", &[]),
        ),
    )
    .await?;
    assert_eq!(
        assert_policy_error(&r, 500),
        "policy `addSecurityHeaders` does not run in the request phase"
    );

    assert_still_serving(&mut client).await?;
    assert!(agent.is_running(), "stderr:\n{}", agent.stderr_log());
    Ok(())
}

/// Wire-compatible with `PolicyRequest`, but header values are `bytes`, so
/// the test can send header values that are not UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct LoosePolicyRequest {
    #[prost(string, tag = "1")]
    request_id: String,
    #[prost(message, repeated, tag = "2")]
    policies: Vec<Policy>,
    #[prost(message, optional, tag = "3")]
    context: Option<LooseRequestContext>,
    #[prost(int32, tag = "5")]
    phase: i32,
    #[prost(string, tag = "8")]
    route: String,
}

/// `RequestContext` with `bytes` header values.
#[derive(Clone, PartialEq, prost::Message)]
struct LooseRequestContext {
    #[prost(map = "string, bytes", tag = "1")]
    headers: HashMap<String, Vec<u8>>,
    #[prost(string, tag = "3")]
    method: String,
    #[prost(string, tag = "4")]
    path: String,
    #[prost(string, tag = "8")]
    client_ip: String,
}

async fn execute_loose(channel: Channel, req: LoosePolicyRequest) -> Result<PolicyResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<LoosePolicyRequest, PolicyResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/policy.agent.v1.PolicyAgent/ExecutePolicies");
    Ok(grpc.unary(tonic::Request::new(req), path, codec).await?.into_inner())
}

#[tokio::test]
async fn non_utf8_header_bytes_are_a_grpc_error_not_a_crash() -> anyhow::Result<()> {
    let mut agent = AgentProcess::start(&options(policy_data(None))).await?;
    let channel = agent.channel().await?;
    let loose = |value: &[u8]| LoosePolicyRequest {
        request_id: "loose".into(),
        policies: users_request_chain(),
        context: Some(LooseRequestContext {
            headers: HashMap::from([("X-API-Key".to_string(), value.to_vec())]),
            method: "GET".into(),
            path: "/api/v1/users".into(),
            client_ip: "10.0.7.1".into(),
        }),
        phase: PolicyPhase::Request as i32,
        route: USERS.into(),
    };

    // Control: the loose encoding of a valid request is understood.
    let r = execute_loose(channel.clone(), loose(ALICE_KEY.as_bytes())).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert_eq!(r.set_headers(), vec![("X-User-ID", "alice")]);

    let err = execute_loose(channel.clone(), loose(b"pe_live_\xff\xfe\x80key"))
        .await
        .err()
        .unwrap_or_else(|| panic!("non-UTF-8 header value accepted"));
    assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
    assert!(err.message().contains("failed to decode Protobuf message"), "{err:?}");
    assert!(err.message().contains("UTF-8"), "{err:?}");

    // The same connection and the agent keep working.
    let r = execute_loose(channel.clone(), loose(ALICE_KEY.as_bytes())).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    let mut client = PolicyAgentClient::new(channel);
    assert_still_serving(&mut client).await?;
    assert!(agent.is_running(), "stderr:\n{}", agent.stderr_log());
    Ok(())
}

// --- secrets --------------------------------------------------------------------------

#[tokio::test]
async fn api_keys_and_tokens_never_reach_the_log() -> anyhow::Result<()> {
    let signer = RsaSigner::generate()?;
    let other_signer = RsaSigner::generate()?;
    let agent = AgentProcess::start(&AgentOptions {
        log_level: "debug".into(),
        ..options(policy_data(Some(&signer.public_key_pem()?)))
    })
    .await?;
    let mut client = agent.client().await?;

    let admin = signer.sign(&claims("alice", &["admin"], 600))?;
    let reader = signer.sign(&claims("bob", &["reader"], 600))?;
    let forged = other_signer.sign(&claims("mallory", &["admin"], 600))?;
    let expired = signer.sign(&claims("alice", &["admin"], -3600))?;
    let unsigned = unsigned_token(&claims("alice", &["admin"], 600))?;

    for key in [ALICE_KEY, UNKNOWN_KEY] {
        let r = execute(&mut client, users_get("10.0.8.1", &[("X-API-Key", key)])).await?;
        assert_ne!(r.code(), StatusCode::PolicyError, "{r:?}");
        // A failing chain after the key was read.
        let mut req = users_get("10.0.8.1", &[("X-API-Key", key)]);
        req.policies[1] = policy("rateLimit", &[("requests_per_second", "fast")]);
        execute(&mut client, req).await?;
    }
    for token in [&admin, &reader, &forged, &expired, &unsigned] {
        let r = execute(&mut client, admin_get(Some(&format!("Bearer {token}")))).await?;
        assert_ne!(r.code(), StatusCode::PolicyError, "{r:?}");
    }
    // The key in a request that fails before evaluation.
    let mut req = users_get("10.0.8.1", &[("X-API-Key", ALICE_KEY)]);
    req.deadline_ms = -1;
    execute(&mut client, req).await?;

    let log = agent.stderr_log();
    assert!(log.contains("policy-agent listening"), "stderr is not captured:\n{log}");
    assert!(log.contains("chain evaluated"), "debug events are not logged:\n{log}");
    for (what, secret) in [
        ("API key", ALICE_KEY),
        ("unknown API key", UNKNOWN_KEY),
        ("admin token", admin.as_str()),
        ("reader token", reader.as_str()),
        ("forged token", forged.as_str()),
        ("expired token", expired.as_str()),
        ("unsigned token", unsigned.as_str()),
    ] {
        assert!(!log.contains(secret), "{what} `{secret}` is in the agent's log:\n{log}");
        // Nor any part of a token after its (shared) header segment.
        for part in secret.split('.').skip(1).filter(|p| p.len() > 16) {
            assert!(!log.contains(part), "part of the {what} is in the agent's log:\n{log}");
        }
    }
    Ok(())
}
