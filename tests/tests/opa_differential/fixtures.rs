//! What the differential test compiles: the kernel config (the deployed
//! routes plus variants) and the policy data directory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use super::keys;
use super::tokens::Keys;

pub const ISSUER: &str = "https://auth.example.com";
pub const AUDIENCE: &str = "api-service";
pub const HS_SECRET: &str = "test-hs-secret-not-for-production-0123456789abcdef";
pub const HS_WRONG_SECRET: &str = "another-secret-that-is-long-enough-0123456789abcdef";
/// 2000-01-01, 2099-01-01 and 2100-01-01 (UTC), in seconds.
pub const T2000: i64 = 946_684_800;
pub const T2099: i64 = 4_070_908_800;
pub const T2100: i64 = 4_102_444_800;

/// API keys (plaintext; only their SHA-256 is in the data).
pub const KEY_ALICE: &str = "ak_live_alice_0123456789";
pub const KEY_BOB: &str = "ak_live_bob_9876543210";
pub const KEY_PARTNER: &str = "pk_partner_co_55555";
pub const KEY_ZOE: &str = "ak_live_zoë_ключ_🔑";
pub const KEY_NO_USER: &str = "ak_live_broken_1111";
pub const KEY_EMPTY_USER: &str = "ak_live_empty_2222";
pub const KEY_NOT_OBJECT: &str = "ak_live_string_3333";
pub const KEY_NUMERIC_USER: &str = "ak_live_number_4444";

/// Lower-case hex SHA-256, as API keys are stored in the data.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// The JWKS in the policy data: RSA key A (no `alg`) and the EC keys.
pub fn data_jwks(k: &Keys) -> anyhow::Result<Value> {
    Ok(json!({"keys": [
        Keys::rsa_jwk(&k.rsa_a, "rs-a", None),
        Keys::ec_jwk(&k.ec256_a, "es-a", "P-256", "ES256")?,
        Keys::ec_jwk(&k.ec384_a, "es384-a", "P-384", "ES384")?,
    ]}))
}

/// Writes the policy data directory (one `data.json` per policy, placed by
/// path) and returns it.
pub fn write_data_dir(dir: &Path, k: &Keys) -> anyhow::Result<PathBuf> {
    let data = dir.join("data");
    let keys = json!({
        sha256_hex(KEY_ALICE): {"user_id": "alice", "name": "Alice"},
        sha256_hex(KEY_BOB): {"user_id": "bob"},
        sha256_hex(KEY_PARTNER): {"user_id": "partner-co", "tier": "gold"},
        sha256_hex(KEY_ZOE): {"user_id": "zoë"},
        sha256_hex(KEY_NO_USER): {"name": "no user id"},
        sha256_hex(KEY_EMPTY_USER): {"user_id": ""},
        sha256_hex(KEY_NOT_OBJECT): "bob",
        sha256_hex(KEY_NUMERIC_USER): {"user_id": 42},
    });
    let files = [
        ("policy_data/apiKeyAuth", json!({"keys": keys})),
        (
            "policy_data/jwtValidation",
            json!({"jwks": data_jwks(k)?, "public_key_pem": Keys::ec_pem(&k.ec256_a)?, "secret": HS_SECRET}),
        ),
        (
            "policy_data/roleCheck",
            json!({"bindings": {
                "alice": ["admin"],
                "bob": ["reader"],
                "carol": [],
                "dave": ["auditor"],
                "eve": "admin",
                "zoë": ["admin", "reader", "auditor"],
                "partner-co": ["partner"],
                "ünï": ["rôle-ü"],
            }}),
        ),
    ];
    for (rel, doc) in files {
        let d = data.join(rel);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("data.json"), serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(data)
}

fn entry(policy: &str, metadata: Value) -> Value {
    json!({"policy": policy, "metadata": metadata})
}

fn entry_on(policy: &str, metadata: Value, on_failure: &str) -> Value {
    json!({"policy": policy, "metadata": metadata, "on_failure": on_failure})
}

/// Routes that differ only in the jwtValidation key material.
pub const KEY_ROUTES: &[&str] = &[
    "/keys/broken-jwks",
    "/keys/pem-trailing-data",
    "/keys/certificate",
];

/// A route whose only policy is jwtValidation with `metadata`.
fn jwt_only(route: &str, metadata: Value) -> Value {
    json!({
        "route_name": route,
        "request_policy_chain": [entry("jwtValidation", metadata)],
        "response_policy_chain": [],
    })
}

/// The routes added to the deployed config's.
pub fn extra_routes(k: &Keys) -> anyhow::Result<Vec<Value>> {
    let all_algs = json!([
        "RS256", "RS384", "RS512", "PS256", "PS384", "ES256", "ES384", "HS256", "HS384", "HS512"
    ]);
    Ok(vec![
        json!({
            "route_name": "/api/v2/reports",
            "request_policy_chain": [
                entry("jwtValidation", json!({"issuer": ISSUER, "audience": AUDIENCE, "algorithms": all_algs,
                    "leeway_seconds": 0, "header_name": "X-Auth-Token"})),
                entry("roleCheck", json!({"required_roles": ["reader", "auditor"], "match": "all"})),
                entry("rateLimit", json!({"requests_per_second": 0.5, "burst": 3, "key": "user"})),
            ],
            "response_policy_chain": [
                entry("addSecurityHeaders", json!({})),
                entry("responseBodyTransform", json!({"remove_fields": ["data.internal_id", "items.0.secret", "meta.trace.id", "password"]})),
                entry("auditLog", json!({"log_request_body": true, "log_response_body": false})),
            ],
        }),
        json!({
            "route_name": "/api/v2/partners",
            "request_policy_chain": [
                entry_on("apiKeyAuth", json!({"header_name": "X-Partner-Key", "required": false}), "continue"),
                entry("geoFence", json!({"region": "eu"})),
                entry("rateLimit", json!({"requests_per_second": 2, "burst": 2, "key": "header:X-Tenant"})),
                entry_on("roleCheck", json!({"required_roles": ["partner", "admin"]}), "skip_remaining"),
            ],
            "response_policy_chain": [
                entry_on("responseBodyTransform", json!({"remove_fields": ["internal_id", "secret"]}), "continue"),
                entry("addSecurityHeaders", json!({"headers": {"Cache-Control": "no-store", "X-Frame-Options": "SAMEORIGIN"}})),
            ],
        }),
        json!({
            "route_name": "/internal/misconfigured",
            "request_policy_chain": [
                entry_on("jwtValidation", json!({"leeway_seconds": -5}), "continue"),
                entry_on("rateLimit", json!({"requests_per_second": 0}), "skip_remaining"),
                entry("allowAll", json!({})),
            ],
            "response_policy_chain": [
                entry_on("auditLog", json!({"log_response_body": "yes"}), "continue"),
                entry_on("rateLimit", json!({"requests_per_second": 1}), "continue"),
                entry("addSecurityHeaders", json!({"headers": {"X Bad Name": "v", "X-Ok": "1"}})),
                entry("auditLog", json!({})),
            ],
        }),
        json!({
            "route_name": "/internal/errors",
            "request_policy_chain": [
                entry_on("jwtValidation", json!({
                    "jwks": {"keys": [Keys::rsa_jwk(&k.rsa_a, "rs-a", Some("RS256"))]},
                    "public_key_pem": Keys::rsa_pem(&k.rsa_b)?,
                    "algorithms": ["RS256", "RS384", "PS256", "HS256"],
                }), "continue"),
                entry_on("apiKeyAuth", json!({"required": true}), "continue"),
                entry("rateLimit", json!({"requests_per_second": 1, "burst": 1, "key": "api_key"})),
                entry("auditLog", json!({})),
            ],
            "response_policy_chain": [
                entry_on("responseBodyTransform", json!({"remove_fields": ["a..b"]}), "continue"),
                entry("responseBodyTransform", json!({"remove_fields": ["internal_id"]})),
            ],
        }),
        json!({
            "route_name": "/ünïcode/päth",
            "request_policy_chain": [
                entry_on("jwtValidation", json!({"issuer": ISSUER, "leeway_seconds": 4_000_000_000u64}), "continue"),
                entry("roleCheck", json!({"required_roles": ["admin", "rôle-ü"], "roles_claim": "realm_access.roles"})),
            ],
            "response_policy_chain": [],
        }),
        json!({
            "route_name": "/api/v1/users/",
            "request_policy_chain": [
                entry("apiKeyAuth", json!({})),
                entry("rateLimit", json!({"requests_per_second": 1.5, "key": "api_key"})),
            ],
            "response_policy_chain": [
                entry("responseBodyTransform", json!({"remove_fields": ["internal_id", "users.1.profile"]})),
            ],
        }),
        // Two body transforms in a row: the second sees the first's result.
        json!({
            "route_name": "/api/v2/double-transform",
            "request_policy_chain": [entry("allowAll", json!({}))],
            "response_policy_chain": [
                entry("responseBodyTransform", json!({"remove_fields": ["internal_id"]})),
                entry("responseBodyTransform", json!({"remove_fields": ["secret"]})),
            ],
        }),
        // A JWKS with one key that does not parse next to a good one.
        jwt_only(
            KEY_ROUTES[0],
            json!({"jwks": {"keys": [
                Keys::rsa_jwk(&k.rsa_a, "rs-a", None),
                {"kty": "RSA", "kid": "broken", "n": "!!not-base64!!", "e": "AQAB"},
            ]}}),
        ),
        // A PEM public key followed by more text.
        jwt_only(
            KEY_ROUTES[1],
            json!({
                "public_key_pem": format!("{}\n# rotated 2025-01-01\n", Keys::rsa_pem(&k.rsa_a)?),
            }),
        ),
        // An X.509 certificate instead of a public key.
        jwt_only(
            KEY_ROUTES[2],
            json!({"public_key_pem": keys::RSA_A_CERT, "algorithms": ["RS256", "PS256"]}),
        ),
    ])
}

/// Writes the kernel config: `deploy/kernel-config.yaml` with the extra
/// routes appended (JSON is YAML, so no YAML writer is needed).
pub fn write_kernel_config(dir: &Path, k: &Keys) -> anyhow::Result<PathBuf> {
    let deployed = policy_engine_tests::opa::workspace_root().join("deploy/kernel-config.yaml");
    let text = std::fs::read_to_string(&deployed)
        .with_context(|| format!("reading {}", deployed.display()))?;
    let mut config: Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("parsing {}", deployed.display()))?;
    let routes = config
        .pointer_mut("/policy_kernel/route_policies")
        .and_then(Value::as_array_mut)
        .context("deploy/kernel-config.yaml has no policy_kernel.route_policies")?;
    routes.extend(extra_routes(k)?);
    let path = dir.join("kernel-config.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
    Ok(path)
}

/// A policy name the agent does not know, with characters JSON encoders
/// escape differently (Go escapes `<`, `>`, `&` and U+2028 for HTML).
pub const ODD_UNKNOWN_POLICY: &str = "geo<Fence>&Co\u{2028}";

/// Writes a kernel config for `policyctl compile --fail-on-unknown`: unknown
/// policies become failing steps whose error body names them.
pub fn write_fail_on_unknown_config(dir: &Path) -> anyhow::Result<PathBuf> {
    let config = json!({"policy_kernel": {
        "agents": [{"name": "default-agent", "socket_path": "/var/run/policy-engine/agents/default.sock"}],
        "route_policies": [{
            "route_name": "/strict/unknown",
            "request_policy_chain": [
                entry("allowAll", json!({})),
                entry_on(ODD_UNKNOWN_POLICY, json!({"region": "eu"}), "continue"),
            ],
            "response_policy_chain": [
                entry("addSecurityHeaders", json!({"headers": {"X-A": "1"}})),
                entry("legacy-transform", json!({})),
            ],
        }],
        "default_policy": {"request_policy_chain": [entry("allowAll", json!({}))]},
    }});
    let path = dir.join("kernel-config-fail-on-unknown.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&config)?)?;
    Ok(path)
}
